"""main_thread."""
