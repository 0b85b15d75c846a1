"""What every other part uses: errors, config files, progress output, the build cache, host paths and namespaces."""
