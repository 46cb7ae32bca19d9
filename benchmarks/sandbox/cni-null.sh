#!/usr/bin/env bash
# A CNI plugin that configures nothing. The benchmark's pods get a network namespace of their
# own with only `lo` (containerd's internal loopback): runsc gives a pod on the host's network
# no interface at all, and a cluster's sandboxed pods have their own namespace. containerd
# requires an `eth0` in the result, so one is reported with a documentation address
# (192.0.2.0/24, never routed) that exists nowhere; nothing touches the host's namespace.
set -euo pipefail

case "${CNI_COMMAND:-}" in
    ADD)
        cat >/dev/null # the network configuration
        printf '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"%s"}],%s}\n' \
            "${CNI_NETNS}" '"ips":[{"address":"192.0.2.1/32","interface":0}]'
        ;;
    DEL | CHECK)
        cat >/dev/null
        ;;
    VERSION)
        printf '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}\n'
        ;;
    *)
        echo "cni-null: unsupported CNI_COMMAND ${CNI_COMMAND:-}" >&2
        exit 1
        ;;
esac
