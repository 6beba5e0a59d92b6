#!/usr/bin/env bash
# Makes sure wgpu finds a Vulkan device for the GPU code path's tests (scripts/test.sh
# runs it): on a machine without one, installs Mesa's Vulkan drivers, whose lavapipe is
# a Vulkan device on the CPU (Debian and Ubuntu: `mesa-vulkan-drivers`, with the
# loader `libvulkan1`). A machine with a GPU driver already is left as it is. Needs
# root (or sudo) and apt when something is missing.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# The loader's library and at least one driver manifest (ICD).
has_loader() { ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null; }
has_driver() { compgen -G '/usr/share/vulkan/icd.d/*.json' || compgen -G '/etc/vulkan/icd.d/*.json'; } >/dev/null
if ! has_loader || ! has_driver; then
  echo "vulkan-up: installing mesa-vulkan-drivers and libvulkan1 (lavapipe: Vulkan on the CPU)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
