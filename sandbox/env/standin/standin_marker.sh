# An activate.d script, as conda packages install them: it proves that commands
# run after a real activation, not only with PATH set.
export CODEMONKEYS_STANDIN_ACTIVATED=testbed
