"""HTTP-facing models, problem+json errors and the adapter between triggers and handlers."""
