"""Fleet's API on a management cluster: custom resources in, workflows started, status out."""
