"""Activities: all I/O with git, helm, kustomize, Kubernetes, registries and the content store."""
