"""The bottom layer: errors, paths and the cache folder, profiles (config) and the claim-family registry."""
