"""A local Kubernetes control plane of real binaries (etcd, kube-apiserver, controller-manager, scheduler, kwok)."""
