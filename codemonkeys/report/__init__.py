"""The run report: data gathered from the store (``data``), pass@k and its fit (``passk``),
candidate grades in and out (``grades``), inline SVG charts (``svg``) and the HTML page (``html``)."""
