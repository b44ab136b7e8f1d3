# qaudio — user-facing targets. See README.md.
#   make demo   install deps, build, run the daemon on the WAV backend with two qubes
#   make test   install deps, build from scratch into build/, run every CTest label
#   make mixer-screenshots  rerun the mixer UI's Xvfb and Bluetooth tests, saving docs/images/mixer-*.png
SHELL := /bin/bash
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

# Debian packages the build, the tests and the demo need.
DEB_PACKAGES := build-essential cmake ninja-build pkg-config ccache clang libclang-rt-14-dev \
  libgtest-dev libgmock-dev googletest libbenchmark-dev \
  nlohmann-json3-dev libcli11-dev \
  libpipewire-0.3-dev libspa-0.2-dev libpulse-dev libasound2-dev libxen-dev \
  libopus-dev libsoxr-dev libspeexdsp-dev libsodium-dev \
  libsdbus-c++-dev libsystemd-dev qt6-base-dev debhelper \
  pulseaudio pulseaudio-utils pipewire pipewire-bin wireplumber pipewire-pulse \
  alsa-utils libasound2-plugins sox dbus dbus-daemon python3-dbusmock \
  xvfb trayer imagemagick systemd

.PHONY: deps build test demo bench clean format mixer-screenshots

deps:
	@missing=$$(dpkg-query -W -f='$${Package} $${Status}\n' $(DEB_PACKAGES) 2>/dev/null | \
	  awk '$$4 != "installed" {print $$1}'; \
	  for p in $(DEB_PACKAGES); do dpkg-query -W $$p >/dev/null 2>&1 || echo $$p; done); \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -z "$${missing// /}" ]; then echo "deps: all Debian packages present"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "deps: missing Debian packages: $$missing" >&2; \
	  echo "deps: run 'sudo make deps' (apt-get needs root), then run make again" >&2; exit 1; fi; \
	echo "deps: installing $$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -q && apt-get install -y -q --no-install-recommends $$missing

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQAUDIO_WERROR=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# From scratch: the build tree is removed first (ccache keeps rebuilds quick).
test: deps
	rm -rf $(BUILD)
	$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

demo: build
	tools/demo.sh --build $(BUILD) --out demo-out.wav

mixer-screenshots: build
	cd $(BUILD) && QAUDIO_SCREENSHOT_DIR=$(CURDIR)/docs/images ctest --output-on-failure -R 'MixerE2E|BtWindowTest.pairing'

bench: build
	$(BUILD)/bench/qaudio-bench --benchmark_min_time=0.2
	if [ -x $(BUILD)/bench/qaudio-latency-probe ]; then \
	  $(BUILD)/bench/qaudio-latency-probe --server pulse && \
	  $(BUILD)/bench/qaudio-latency-probe --server pipewire; fi

format:
	git ls-files '*.cpp' '*.hpp' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
