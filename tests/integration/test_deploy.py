# SPDX-License-Identifier: BSD-2-Clause
"""The container deployments in deploy/, proven.

The Fargate shape: the sensor runs in a network namespace of its own shared with an
application (an HTTP server), as a non-root user holding only CAP_NET_RAW, configured
only by the PCAPLINE_* variables of deploy/fargate-task-definition.json (the
"environment" values as written, the "secrets" as the PEM text a secret store would
put there), and ships the application's traffic to a receiver in another namespace:
the repository holds exactly the packets tcpdump saw.

The manifests: the Kubernetes DaemonSet and StatefulSet and the task definition are
parsed and checked (images, capabilities NET_RAW only, variable names that are real
configuration keys, certificate paths that are where the Secret is mounted).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import CERTS_TOOL, DATA, RECEIVER, ROOT, SENSOR, Proc
from netns import Namespaces, l3_offset, listening, read_pcap, sensor_segments, stored_records, wait_for

DEPLOY = ROOT / "deploy"
TASKDEF = DEPLOY / "fargate-task-definition.json"
K8S = DEPLOY / "kubernetes"
VERSION = re.search(r"^VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
# Docker's default capability set, which ECS and Fargate start from.
DOCKER_DEFAULT_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                       "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
CAP_NET_RAW = 1 << 13


def sensor_container(taskdef):
    return next(c for c in taskdef["containerDefinitions"] if c["name"] == "pcapline-sensor")


def config_keys(binary, env):
    """PCAPLINE_* names of every configuration key, from --check-config's dump."""
    r = subprocess.run([binary, "--check-config"], capture_output=True, text=True, timeout=30,
                       env={"PATH": os.environ["PATH"], **env})
    assert r.returncode == 0, r.stderr
    paths = re.findall(r"^([a-z0-9_.]+) = ", r.stdout, re.M)
    assert len(paths) > 10, r.stdout
    return {"PCAPLINE_" + re.sub(r"[^A-Za-z0-9]", "_", p).upper() for p in paths}


@pytest.fixture(scope="module")
def sensor_keys():
    return config_keys(SENSOR, {"PCAPLINE_CAPTURE_FILE": str(DATA / "pcaps" / "dns-udp-queries.pcap"),
                                "PCAPLINE_UPLINK_RECEIVERS": "127.0.0.1:1", "PCAPLINE_UPLINK_INSECURE": "true",
                                "PCAPLINE_SENSOR_ID": "keys"})


@pytest.fixture(scope="module")
def receiver_keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("rkeys")
    return config_keys(RECEIVER, {"PCAPLINE_AUTH_INSECURE": "true", "PCAPLINE_STORAGE_DIR": str(d),
                                  "PCAPLINE_API_LISTEN": ""})


# ---- the Fargate shape -------------------------------------------------------------


def caps_of(pid):
    st = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v, 16) for k, v in re.findall(r"^(Cap(?:Inh|Prm|Eff|Bnd|Amb)):\s+([0-9a-f]+)$", st, re.M)}


def l3(linktype, recs):
    out = []
    for r in recs:
        _, off, _ = l3_offset(linktype, r.data)
        assert off is not None, r
        out.append(r.data[off:])
    return out


def test_fargate_sidecar(binaries, tmp_path, procs):
    taskdef = json.loads(TASKDEF.read_text())
    sc = sensor_container(taskdef)
    env_spec = {e["name"]: e["value"] for e in sc["environment"]}
    secret_names = [s["name"] for s in sc["secrets"]]
    uid = int(sc["user"])
    app_port = next(c for c in taskdef["containerDefinitions"] if c["name"] == "web")["portMappings"][0]["containerPort"]
    host, port = env_spec["PCAPLINE_UPLINK_RECEIVERS"].rsplit(":", 1)

    # Certificates: the receiver's names the host the task definition ships to.
    certs = tmp_path / "certs"
    certs.mkdir()
    for argv in (["ca"], ["receiver", host, "198.18.9.2"], ["sensor", "web-fargate"]):
        subprocess.run([CERTS_TOOL, certs, *argv], check=True, capture_output=True)
    secrets = {"PCAPLINE_TLS_CA": (certs / "ca.crt").read_text(),
               "PCAPLINE_TLS_CERT": (certs / "web-fargate.crt").read_text(),
               "PCAPLINE_TLS_KEY": (certs / "web-fargate.key").read_text()}
    assert sorted(secret_names) == sorted(secrets)

    ns = Namespaces()
    hosts_dir = None
    try:
        task = ns.add("task")
        rx = ns.add("rx")
        ns.veth(task, "eth0", "198.18.9.1", rx, "eth0", "198.18.9.2")
        # The task resolves the receiver's name as its VPC DNS would.
        hosts_dir = Path("/etc/netns") / task
        hosts_dir.mkdir(parents=True)
        (hosts_dir / "hosts").write_text(f"127.0.0.1 localhost\n198.18.9.2 {host}\n")

        data = tmp_path / "repo"
        rcv = Proc([RECEIVER, "-l", f"198.18.9.2:{port}", "-d", data, "--ca", certs / "ca.crt",
                    "--cert", certs / "receiver.crt", "--key", certs / "receiver.key"],
                   tmp_path / "receiver.log", netns=rx)
        procs.append(rcv)
        wait_for(lambda: "listening on" in rcv.text(), 20, "the receiver", rcv.text)

        # The application container: an HTTP server on the task's port.
        www = tmp_path / "www"
        www.mkdir()
        (www / "index.html").write_bytes(b"pcapline fargate sidecar\n" * 200)
        app = Proc(["/usr/bin/python3", "-m", "http.server", app_port, "--bind", "198.18.9.1", "--directory", www],
                   tmp_path / "app.log", netns=task)
        procs.append(app)
        wait_for(lambda: listening(task, "tcp", app_port), 20, "the application", app.text)

        truth = tmp_path / "tcpdump.pcap"
        td = Proc(["tcpdump", "-i", env_spec["PCAPLINE_CAPTURE_INTERFACES"], "-U", "-n", "-w", truth,
                   "--time-stamp-precision=nano", env_spec["PCAPLINE_CAPTURE_FILTER"]],
                  tmp_path / "tcpdump.log", netns=task)
        procs.append(td)
        wait_for(lambda: "listening on" in td.text(), 20, "tcpdump", td.text)

        # The sidecar: only the task definition's variables, as the container's user,
        # with NET_RAW alone (ambient here, the image's file capability on Fargate).
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env_spec, **secrets}
        sensor_log = open(tmp_path / "sensor.log", "wb")
        sen = subprocess.Popen(
            ["ip", "netns", "exec", task, "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
             "--inh-caps=-all,+net_raw", "--ambient-caps=-all,+net_raw", "--bounding-set=-all,+net_raw", "--",
             SENSOR], stdout=sensor_log, stderr=subprocess.STDOUT, env=env)

        def sensor_text():
            return (tmp_path / "sensor.log").read_text(errors="replace")
        try:
            wait_for(lambda: sen.poll() is not None or "starting:" in sensor_text(), 20,
                     "the sensor to start", sensor_text)
            assert sen.poll() is None, sensor_text()
            assert "sensor web-fargate starting" in sensor_text(), sensor_text()
            # No configuration file: every setting is the task definition's or a default.
            assert "PCAPLINE_CONFIG" not in env
            caps = caps_of(sen.pid)
            assert caps["CapBnd"] == CAP_NET_RAW, caps
            assert (caps["CapPrm"], caps["CapEff"], caps["CapAmb"]) == (0, 0, 0), caps
            assert Path(f"/proc/{sen.pid}/status").read_text().count(f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}") == 1

            # The application's clients: ten requests from the other side.
            for i in range(10):
                subprocess.run(["ip", "netns", "exec", rx, "curl", "-sS", "-o", "/dev/null", "--max-time", "5",
                                f"http://198.18.9.1:{app_port}/index.html?{i}"], check=True, timeout=15)
            # tcpdump's count settles (every exchange is over when curl returns, but the
            # last ACK or FIN may still be on its way).
            last = [-1, time.time()]

            def settled():
                n = len(read_pcap(truth).records) if truth.stat().st_size >= 24 else 0
                if n != last[0]:
                    last[:] = [n, time.time()]
                return n > 0 and time.time() - last[1] > 1.0
            wait_for(settled, 30, "tcpdump's count to settle", interval=0.2)
            sen.send_signal(signal.SIGTERM)
            assert sen.wait(30) == 0, sensor_text()
        finally:
            if sen.poll() is None:
                sen.kill()
                sen.wait()
            sensor_log.close()
        td.stop(signal.SIGINT)
        assert rcv.stop() == 0, rcv.text()

        want = read_pcap(truth)
        _, closed, opened = sensor_segments(data, "web-fargate")
        assert closed and not opened, (closed, opened)
        linktypes, got = stored_records(closed)
        (lt,) = {t for ts in linktypes.values() for t in ts}
        # Ten HTTP exchanges of at least a handshake, request, response and close each.
        assert len(want.records) >= 10 * 8, len(want.records)
        assert len(got) == len(want.records), (len(got), len(want.records))
        # The same packets from the network header on (the link headers may be of
        # another cooked kind), in the same order.
        assert l3(lt, got) == l3(want.linktype, want.records)
        m = re.search(r"final: captured (\d+) packets", sensor_text())
        assert m and int(m.group(1)) == len(got), sensor_text()
        print(f"\nfargate shape: {len(got)} packets captured, stored, and seen by tcpdump")
    finally:
        if hosts_dir and hosts_dir.exists():
            shutil.rmtree(hosts_dir)
        errors = ns.cleanup()
        assert not errors, errors


# ---- the manifests -------------------------------------------------------------------


def test_taskdef_fields(sensor_keys):
    taskdef = json.loads(TASKDEF.read_text())
    assert taskdef["networkMode"] == "awsvpc" and taskdef["requiresCompatibilities"] == ["FARGATE"]
    sc = sensor_container(taskdef)
    assert sc["image"].endswith(f"/pcapline-sensor:{VERSION}"), sc["image"]
    assert sc["essential"] is False  # the application must not die with its sensor
    assert sc["user"] == re.search(r"^USER (\d+):", (DEPLOY / "Dockerfile").read_text(), re.M).group(1)
    caps = sc["linuxParameters"]["capabilities"]
    # Fargate lets a task add no capability but SYS_PTRACE; NET_RAW is in the
    # default set, and everything else of it is dropped.
    assert "add" not in caps
    assert DOCKER_DEFAULT_CAPS - set(caps["drop"]) == {"NET_RAW"}, caps
    names = [e["name"] for e in sc["environment"]] + [s["name"] for s in sc["secrets"]]
    assert len(set(names)) == len(names), names
    assert all(n.startswith("PCAPLINE_") for n in names), names
    assert set(names) <= sensor_keys, set(names) - sensor_keys
    assert {"PCAPLINE_TLS_CA", "PCAPLINE_TLS_CERT", "PCAPLINE_TLS_KEY"} == {s["name"] for s in sc["secrets"]}
    assert all(s["valueFrom"].startswith("arn:aws:secretsmanager:") for s in sc["secrets"])
    # The capture filter matches the application's port.
    web = next(c for c in taskdef["containerDefinitions"] if c["name"] == "web")
    filt = next(e["value"] for e in sc["environment"] if e["name"] == "PCAPLINE_CAPTURE_FILTER")
    assert filt == f"tcp port {web['portMappings'][0]['containerPort']}"


def k8s_docs():
    docs = {}
    for f in sorted(K8S.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            docs[(d["kind"], d["metadata"]["name"])] = d
    return docs


def env_of(container):
    return {e["name"]: e.get("value") for e in container["env"]}


def mount_paths(pod, container):
    """{mountPath: volume} of a container."""
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    return {m["mountPath"]: vols.get(m["name"], {"name": m["name"]}) for m in container["volumeMounts"]}


def check_tls_paths(pod, container, names):
    """Every PCAPLINE_TLS_* path lies in a mounted Secret volume."""
    mounts = mount_paths(pod, container)
    env = env_of(container)
    for n in names:
        path = env[n]
        mp = next((m for m in mounts if path.startswith(m + "/")), None)
        assert mp, f"{n}={path} is under no volume mount"
        assert "secret" in mounts[mp], f"{n}={path}: {mp} is not a Secret"


def test_kubernetes_manifests(sensor_keys, receiver_keys):
    docs = k8s_docs()
    ds = docs[("DaemonSet", "pcapline-sensor")]
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert {"operator": "Exists"} in pod["tolerations"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    (c,) = pod["containers"]
    assert c["image"].endswith(f"/pcapline-sensor:{VERSION}"), c["image"]
    assert c["resources"]["requests"] and c["resources"]["limits"]
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    env = env_of(c)
    pl = {n for n in env if n.startswith("PCAPLINE_")}
    assert pl <= sensor_keys, pl - sensor_keys
    assert set(env) - pl == {"NODE_NAME"}  # for $(NODE_NAME) in the certificate paths
    check_tls_paths(pod, c, ["PCAPLINE_TLS_CA", "PCAPLINE_TLS_CERT", "PCAPLINE_TLS_KEY"])
    assert env["PCAPLINE_TLS_CERT"].endswith("/$(NODE_NAME).crt")
    svc = docs[("Service", "pcapline-receiver")]
    host, port = env["PCAPLINE_UPLINK_RECEIVERS"].rsplit(":", 1)
    assert host == f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local"
    assert int(port) == svc["spec"]["ports"][0]["port"]

    sts = docs[("StatefulSet", "pcapline-receiver")]
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"].endswith(f"/pcapline-receiver:{VERSION}"), c["image"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    env = env_of(c)
    assert set(env) <= receiver_keys, set(env) - receiver_keys
    check_tls_paths(pod, c, ["PCAPLINE_TLS_CA", "PCAPLINE_TLS_CERT", "PCAPLINE_TLS_KEY"])
    # The repository is the claim's volume.
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == env["PCAPLINE_STORAGE_DIR"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    # The Service reaches the container port the receiver listens on.
    (p,) = svc["spec"]["ports"]
    cport = next(cp for cp in c["ports"] if cp["name"] == p["targetPort"])
    assert cport["containerPort"] == int(env["PCAPLINE_LISTEN"].rsplit(":", 1)[1])
    assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    for d in docs.values():
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "pcapline"
