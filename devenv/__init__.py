"""Local substrate of real components for tests and the demo: tools, clusters, servers."""
