"""kubelet stand-in: static pods, API pods bound to the node, Node status and Lease."""
