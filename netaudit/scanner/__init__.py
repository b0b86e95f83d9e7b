"""The orchestration of one scan: the stages in order, local worker processes, progress."""
