"""The collector speaks protocols: OTLP/gRPC and OTLP/HTTP, authentication, limits, status
codes, health and shutdown. It hands decoded requests to store.pipeline and acknowledges only
what the store says is durable. It never touches Parquet."""
