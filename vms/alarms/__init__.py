"""AI alarm records: validation, images, the closed loop, statistics and live push."""
