"""`python -m render STACK OUT`: everything a stack's graph would ship, as files to review."""
