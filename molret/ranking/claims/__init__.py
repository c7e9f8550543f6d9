"""The claims scorer (issue 31): what a description states, what a candidate structure has, a ranker over their
agreement (``statements``, ``structure``, ``ranker``)."""
