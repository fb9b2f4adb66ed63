# llmfile build. `make` builds build/llmfile; `make test` builds and runs every test;
# `make run` sets up the default model and prints a short completion.
CC      ?= cc
PYTHON  ?= python3
BUILD   ?= build
ARCH    := $(shell uname -m)

# Everything is compiled for the architecture's baseline; only kern/levels/*.c get
# a microarchitecture's flags, so no instruction the CPU lacks runs outside them.
ifeq ($(ARCH),x86_64)
BASELINE := -march=x86-64 -mtune=generic
else ifeq ($(ARCH),aarch64)
BASELINE := -march=armv8-a
endif

# NATIVE_LEVEL=x86_avx512vnni (a file in src/kern/levels): everything compiled with
# -march=native and only that level, bound without run-time choice (`make native`):
# the reference bench/cpu_levels.py measures the cost of dispatch against.
ifdef NATIVE_LEVEL
BASELINE := -march=native -DKERN_ONLY_LEVEL_OPS=kern_ops_$(patsubst x86_%,%,$(patsubst arm_%,%,$(NATIVE_LEVEL)))
endif

WARN    := -Wall -Wextra -Wshadow
CFLAGS  ?= -O2 -g
ALL_CFLAGS := -std=c11 $(WARN) $(CFLAGS) $(BASELINE) -D_GNU_SOURCE -pthread -Isrc -MMD -MP
LDLIBS  := -lm -pthread
LDFLAGS ?=
# The server's HTTP (libevent's evhttp) and JSON (jansson) libraries, linked
# statically so the executable still needs only the C library.
SERVER_LIBS := -Wl,-Bstatic -levent_extra -levent_core -ljansson -Wl,-Bdynamic
SERVER_OBJ   = $(BUILD)/gen/server_page.o
# NO_SERVER=1 leaves the server out (the ARM64 cross build: Debian has no arm64
# static libevent/jansson on an x86-64 machine); --server then says so.
ifdef NO_SERVER
SERVER_LIBS :=
SERVER_OBJ   =
ALL_CFLAGS  += -DLLMFILE_NO_SERVER
endif
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

# Kernel levels: the same sources compiled once per microarchitecture (docs/ARCHITECTURE.md).
ifeq ($(ARCH),x86_64)
LEVEL_SRC := $(wildcard src/kern/levels/x86_*.c)
else ifeq ($(ARCH),aarch64)
LEVEL_SRC := $(wildcard src/kern/levels/arm_*.c)
endif
ifdef NATIVE_LEVEL
LEVEL_SRC := src/kern/levels/$(NATIVE_LEVEL).c
endif
LEVEL_FLAGS_x86_sse2       :=
LEVEL_FLAGS_x86_ssse3      := -msse3 -mssse3
LEVEL_FLAGS_x86_sse42      := $(LEVEL_FLAGS_x86_ssse3) -msse4.1 -msse4.2 -mpopcnt
LEVEL_FLAGS_x86_avx        := $(LEVEL_FLAGS_x86_sse42) -mavx
LEVEL_FLAGS_x86_avx2       := $(LEVEL_FLAGS_x86_avx) -mavx2 -mfma -mf16c -mbmi -mbmi2
LEVEL_FLAGS_x86_avx512     := $(LEVEL_FLAGS_x86_avx2) -mavx512f -mavx512bw -mavx512dq -mavx512vl
LEVEL_FLAGS_x86_avx512vnni := $(LEVEL_FLAGS_x86_avx512) -mavx512vnni -mavx512bf16
LEVEL_FLAGS_x86_avx512fp16 := $(LEVEL_FLAGS_x86_avx512vnni) -mavx512fp16
LEVEL_FLAGS_arm_armv8_0         :=
LEVEL_FLAGS_arm_armv8_2_dotprod := -march=armv8.2-a+dotprod+fp16
LEVEL_FLAGS_arm_armv8_6_i8mm    := -march=armv8.6-a+dotprod+fp16+i8mm
level_flags = $(LEVEL_FLAGS_$(basename $(notdir $(1))))

LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/app/*' -not -path 'src/kern/levels/*' | sort) $(LEVEL_SRC)
APP_SRC  := $(shell find src/app -name '*.c' $(if $(NO_SERVER),-not -path 'src/app/server/*') | sort)
TEST_SRC := $(shell find tests -name 'test_*.c' -o -name 'check_*.c' | sort)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
APP_OBJ  := $(APP_SRC:%.c=$(BUILD)/obj/%.o)
SAN_OBJ  := $(LIB_SRC:%.c=$(BUILD)/san/%.o)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
SAN_TEST_BIN := $(patsubst tests/%.c,$(BUILD)/san-tests/%,$(TEST_SRC))
APP_SAN_OBJ := $(APP_SRC:%.c=$(BUILD)/san/%.o)
# The server's web page, embedded as a C array (src/app/server/page/).
PAGE_HTML := src/app/server/page/index.html
PAGE_C    := $(BUILD)/gen/server_page.c

.PHONY: all test tests run model deps clean arm64 native bench-matmul bench-attn
.SECONDARY:
all: $(BUILD)/llmfile

$(BUILD)/llmfile: $(APP_OBJ) $(LIB_OBJ) $(SERVER_OBJ)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(SERVER_LIBS) $(LDLIBS)

# The whole program under AddressSanitizer and UBSan (the server's abuse tests run it).
$(BUILD)/san/llmfile: $(APP_SAN_OBJ) $(SAN_OBJ) $(BUILD)/gen/server_page.o
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -o $@ $^ $(SERVER_LIBS) $(LDLIBS)

# od prints the bytes as hex; sed makes them C literals. No tool beyond coreutils.
$(PAGE_C): $(PAGE_HTML)
	@mkdir -p $(dir $@)
	{ echo '// Generated from $(PAGE_HTML) by the Makefile; do not edit.'; \
	  echo 'const unsigned char server_page_html[] = {'; \
	  od -An -v -tx1 $< | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '0x00};'; \
	  echo 'const unsigned long server_page_html_len = sizeof server_page_html - 1;'; } > $@

$(BUILD)/gen/server_page.o: $(PAGE_C)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(call level_flags,$<) -c -o $@ $<

$(BUILD)/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) $(call level_flags,$<) -c -o $@ $<

# Layers and the layers each one may use (see docs/ARCHITECTURE.md). A test in
# tests/LAYER/ links only LAYER and what is below it, which keeps the layering honest.
DEPS_base    := base
DEPS_gguf    := gguf base
DEPS_quant   := quant base
DEPS_kern    := kern quant base
DEPS_tok     := tok gguf base
DEPS_sample  := sample base
DEPS_chat    := chat base
DEPS_model   := model kern quant gguf base
DEPS_runtime := runtime model tok sample chat kern quant gguf base
DEPS_app     := $(DEPS_runtime)
layer_objs = $(filter $(foreach l,$(DEPS_$(1)),$(2)/src/$(l)/%),$(3))

.SECONDEXPANSION:
$(BUILD)/tests/%: tests/%.c $$(call layer_objs,$$(firstword $$(subst /, ,$$*)),$(BUILD)/obj,$(LIB_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -Itests -o $@ $< $(call layer_objs,$(firstword $(subst /, ,$*)),$(BUILD)/obj,$(LIB_OBJ)) $(LDLIBS)

$(BUILD)/san-tests/%: tests/%.c $$(call layer_objs,$$(firstword $$(subst /, ,$$*)),$(BUILD)/san,$(SAN_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -Itests -o $@ $< $(call layer_objs,$(firstword $(subst /, ,$*)),$(BUILD)/san,$(SAN_OBJ)) $(LDLIBS)

ARM64_CC := aarch64-linux-gnu-gcc
ifeq ($(ARCH),x86_64)
CROSS_TARGETS := $(if $(shell command -v $(ARM64_CC) 2>/dev/null),arm64)
endif
tests: $(BUILD)/llmfile $(BUILD)/san/llmfile $(TEST_BIN) $(SAN_TEST_BIN) $(CROSS_TARGETS)

# ARM64 build with Debian's cross compiler, static so qemu-aarch64 runs it without
# an ARM sysroot (tests/test_qemu.py). Built with the tests when the compiler exists.
arm64:
	@$(MAKE) --no-print-directory ARCH=aarch64 CC=$(ARM64_CC) BUILD=$(BUILD)/arm64 LDFLAGS=-static NO_SERVER=1 \
		$(BUILD)/arm64/llmfile $(BUILD)/arm64/tests/kern/test_levels $(BUILD)/arm64/tests/kern/test_gemm \
		$(BUILD)/arm64/tests/base/test_pool

# The whole suite: C unit tests (plain and sanitized) and end-to-end tests, run by
# pytest. Installs what is missing first, in order (a bare machine has no compiler).
test:
	@bash tools/install_deps.sh
	@bash tools/setup_default_model.sh >/dev/null
	@bash tools/setup_embedding_model.sh >/dev/null
	@$(MAKE) --no-print-directory tests
	$(PYTHON) -m pytest -q tests

deps:
	@bash tools/install_deps.sh

# kern_matmul speed on TinyLlama-shaped matrices (bench/matmul_bench.c).
bench-matmul: $(BUILD)/bench/matmul_bench

$(BUILD)/bench/matmul_bench: bench/matmul_bench.c $(call layer_objs,kern,$(BUILD)/obj,$(LIB_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

# kern_attn speed on prompt and generation tiles (bench/attn_bench.c).
bench-attn: $(BUILD)/bench/attn_bench

$(BUILD)/bench/attn_bench: bench/attn_bench.c $(call layer_objs,kern,$(BUILD)/obj,$(LIB_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

model:
	@bash tools/setup_default_model.sh

# Sets everything up from scratch and prints a short completion from the default model.
run:
	@bash tools/install_deps.sh
	@bash tools/setup_default_model.sh >/dev/null
	@$(MAKE) --no-print-directory all
	./$(BUILD)/llmfile -p "Once upon a time" -n 48 --temp 0

# The -march=native single-level build (see NATIVE_LEVEL above) in $(BUILD)/native.
native:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/native \
		NATIVE_LEVEL=$(or $(NATIVE_LEVEL),$(shell $(BUILD)/llmfile --cpu-info | sed -n 's/^chosen: \([^ ]*\).*/\1/p' | sed 's/^\(armv[0-9]\)\.\([0-9]\)/arm_\1_\2/;s/^\([a-z0-9]*\)$$/x86_\1/')) \
		$(BUILD)/native/llmfile

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
