"""Reading images, masks and cohort manifests."""
