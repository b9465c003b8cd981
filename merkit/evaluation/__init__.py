"""How results are judged: the fold protocols (``splits``, pure pandas), the pooled scores (``metrics``) and the
published numbers the kit compares against (``published``)."""
