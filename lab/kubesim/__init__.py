"""kubesim: Python stand-ins for the Kubernetes binaries, shipped to the lab as .deb packages.

`kubesim/` (the inner package) is what the packages install on a machine under
/usr/lib/kubesim/python; `build.py` turns it into kubeadm/kubelet/kubectl/cri-tools .debs.
"""
