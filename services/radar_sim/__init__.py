"""services/radar_sim."""
