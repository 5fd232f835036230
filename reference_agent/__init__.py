"""A real voice agent to call: the embedded default target, with fault knobs."""
