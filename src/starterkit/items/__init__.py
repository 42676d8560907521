"""Items: the example owned resource (schemas, service, router)."""
