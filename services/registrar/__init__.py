"""services/registrar."""
