"""Finding peers: a Discovery protocol with mDNS and static peers behind it; emits hints."""
