# driftd — `make help` lists the targets.

GO          ?= go
BIN         ?= bin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null)
# Every timestamp of the image is the commit's: the same commit gives the same image.
EPOCH       ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
LDFLAGS     := -X github.com/driftd/driftd/internal/version.Version=$(VERSION)
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
HOST_PLATFORM   := linux/$(shell $(GO) env GOARCH)
GOTESTSUM   := $(GO) run gotest.tools/gotestsum@v1.13.0
# Integration tests start real API servers; give a cold, loaded 2-core machine room.
TEST_FLAGS  ?= -timeout 45m
PKGS        ?= ./...
BENCH_CLUSTERS ?= 1000
BENCH_MACHINES ?= 2000
BENCHTIME   ?= 1x

# Every go command uses the toolchain on the machine, whatever a module asks for.
export GOTOOLCHAIN := local

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_.-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/driftd
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/driftd ./cmd/driftd

.PHONY: image
image: ## Build driftd's image without a container engine or base image: an OCI layout in bin/image (IMAGE_PLATFORMS)
	@rm -rf $(BIN)/image-build && mkdir -p $(BIN)/image-build
	@for p in $(IMAGE_PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; \
		echo "building driftd for $$p"; \
		GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -buildid= $(LDFLAGS)" \
			-o $(BIN)/image-build/driftd-$$os-$$arch ./cmd/driftd || exit 1; done
	cd hack/image && $(GO) run . -out ../../$(BIN)/image -version $(VERSION) -revision "$(REVISION)" -epoch $(EPOCH) \
		$(foreach p,$(IMAGE_PLATFORMS),$(p)=../../$(BIN)/image-build/driftd-$(subst /,-,$(p)))

.PHONY: install.yaml
install.yaml: ## Render config/default with the image pinned by digest into bin/install.yaml (IMAGE=repo@sha256:..., default: bin/image's digest)
	@mkdir -p $(BIN)
	$(GO) run ./hack/manifests -image "$${IMAGE:-ghcr.io/driftd/driftd@$$(cat $(BIN)/image/digest)}" > $(BIN)/install.yaml
	@echo "$(BIN)/install.yaml"

.PHONY: demo
demo: testbin ## Watch driftd with Cluster API's controllers: a cluster from Git, a kubectl scale undone, a machine lost in the cloud replaced, a denied template edit (DEMO_KEEP=1 keeps it running)
	KUBEBUILDER_ASSETS="$$(hack/testbin.sh)" DRIFTD_CAPI="$$(hack/testbin.sh capi)" DEMO_KEEP=$(DEMO_KEEP) $(GO) run ./hack/demo

.PHONY: testbin
testbin: ## Build the test bed's kube-apiserver, etcd, kube-controller-manager and Cluster API's controllers (once per pin)
	@hack/testbin.sh >/dev/null
	@hack/testbin.sh capi >/dev/null

.PHONY: test
test: testbin ## Run every test against the test bed (real API server, CRDs, moto, vcsim) and the image of this machine's platform
	$(MAKE) --no-print-directory image IMAGE_PLATFORMS=$(HOST_PLATFORM)
	KUBEBUILDER_ASSETS="$$(hack/testbin.sh)" DRIFTD_CAPI="$$(hack/testbin.sh capi)" DRIFTD_IMAGE="$(CURDIR)/$(BIN)/image" \
		$(GOTESTSUM) --format pkgname-and-test-fails -- $(TEST_FLAGS) $(PKGS)

.PHONY: bench
bench: testbin ## Benchmarks on generated fleets (BENCH_CLUSTERS: a size or a list such as 1000,3000,10000; BENCH_MACHINES: the cloud snapshot's instances): the binary from empty at scale, no-change cycle vs ssa.Diff, latency, peak RSS, the cloud snapshot
	KUBEBUILDER_ASSETS="$$(hack/testbin.sh)" BENCH_CLUSTERS=$(BENCH_CLUSTERS) BENCH_MACHINES=$(BENCH_MACHINES) $(GO) test -run '^$$' -bench . -benchtime=$(BENCHTIME) -timeout 240m ./test/bench/ ./internal/...

.PHONY: lint
lint: ## go vet and a gofmt check
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: fmt
fmt: ## Format the Go code
	gofmt -w $$(git ls-files '*.go')

.PHONY: clean
clean: ## Remove build output (keeps the test bed's control plane; `rm -rf bin` removes it too)
	rm -f $(BIN)/driftd
