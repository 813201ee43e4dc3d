"""services/lagmon."""
