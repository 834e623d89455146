"""The control plane's own credentials: a CA, the API server's serving certificate, the service-account key pair and
one bearer token per client, generated fresh for every cluster (Python `cryptography`).

The CA key signs only the serving certificate (and is given to the controller-manager as its cluster signer); clients
authenticate with static bearer tokens (`--token-auth-file`), the way envtest's "secure" mode does, so no client
key ever leaves the state directory. Files are written 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

# The users of the cluster: (name, uid, groups). The controller-manager and scheduler users are the ones the
# bootstrap RBAC policy binds (system:kube-controller-manager, system:kube-scheduler); kwok fakes every kubelet and
# updates any node's and pod's status, so it is an administrator, as in kwokctl's clusters.
USERS = (
    ("admin", "admin", ("system:masters",)),
    ("system:kube-controller-manager", "kcm", ()),
    ("system:kube-scheduler", "scheduler", ()),
    ("kwok-controller", "kwok", ("system:masters",)),
)
SERVICE_IP = "10.0.0.1"  # the first address of --service-cluster-ip-range 10.0.0.0/24
SERVING_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Pki:
    """Paths of the generated credentials, and the tokens by user name."""

    directory: Path
    tokens: dict[str, str]

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    @property
    def token_file(self) -> Path:
        return self.directory / "tokens.csv"


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def generate(directory: Path) -> Pki:
    """Write a fresh CA, serving certificate, service-account key pair and token file into `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    pem = serialization.Encoding.PEM

    def key_pem(key) -> bytes:
        return key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recipe-harness-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    serving_key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in SERVING_DNS] + [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(SERVICE_IP)),
    ]
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = ec.generate_private_key(ec.SECP256R1())
    pki = Pki(directory, {name: secrets.token_hex(24) for name, _uid, _groups in USERS})
    _write(pki.ca_key, key_pem(ca_key))
    _write(pki.ca_cert, ca_cert.public_bytes(pem))
    _write(pki.serving_key, key_pem(serving_key))
    _write(pki.serving_cert, serving_cert.public_bytes(pem))
    _write(pki.sa_key, key_pem(sa_key))
    _write(
        pki.sa_pub,
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    # token,user,uid,"group1,group2" (kube-apiserver --token-auth-file)
    lines = []
    for name, uid, groups in USERS:
        line = f"{pki.tokens[name]},{name},{uid}"
        if groups:
            line += ',"' + ",".join(groups) + '"'
        lines.append(line)
    _write(pki.token_file, ("\n".join(lines) + "\n").encode())
    return pki


def load(directory: Path) -> Pki:
    """The credentials a previous generate() wrote (for `cluster status`, `env` and the tests)."""
    tokens = {}
    for line in (directory / "tokens.csv").read_text().splitlines():
        parts = line.split(",", 3)
        if len(parts) >= 2:
            tokens[parts[1]] = parts[0]
    return Pki(directory, tokens)


def kubeconfig(server: str, ca_cert: Path, user: str, token: str) -> str:
    """A kubeconfig for one user (bearer token), as YAML text."""
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: recipe-harness\n  cluster:\n    server: {server}\n"
        f"    certificate-authority: {ca_cert}\n"
        f"users:\n- name: {user}\n  user:\n    token: {token}\n"
        f"contexts:\n- name: recipe-harness\n  context:\n    cluster: recipe-harness\n    user: {user}\n"
        "current-context: recipe-harness\n"
    )
