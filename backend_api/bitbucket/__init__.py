"""The backend's own Bitbucket calls (connect, discover, hook), on top of provider_clients/bitbucket."""
