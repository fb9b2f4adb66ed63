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

WARN    := -Wall -Wextra -Wshadow
CFLAGS  ?= -O2 -g
ALL_CFLAGS := -std=c11 $(WARN) $(CFLAGS) $(BASELINE) -D_GNU_SOURCE -pthread -Isrc -MMD -MP
LDLIBS  := -lm -pthread
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/app/*' | sort)
APP_SRC  := $(shell find src/app -name '*.c' | sort)
TEST_SRC := $(shell find tests -name 'test_*.c' | sort)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
APP_OBJ  := $(APP_SRC:%.c=$(BUILD)/obj/%.o)
SAN_OBJ  := $(LIB_SRC:%.c=$(BUILD)/san/%.o)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
SAN_TEST_BIN := $(patsubst tests/%.c,$(BUILD)/san-tests/%,$(TEST_SRC))

.PHONY: all test tests run model clean
.SECONDARY:
all: $(BUILD)/llmfile

$(BUILD)/llmfile: $(APP_OBJ) $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -c -o $@ $<

# Layers and the layers each one may use (see docs/ARCHITECTURE.md). A test in
# tests/LAYER/ links only LAYER and what is below it, which keeps the layering honest.
DEPS_base    := base
DEPS_gguf    := gguf base
DEPS_quant   := quant base
DEPS_kern    := kern quant base
DEPS_tok     := tok gguf base
DEPS_sample  := sample base
DEPS_model   := model kern quant gguf base
DEPS_runtime := runtime model tok sample kern quant gguf base
DEPS_app     := $(DEPS_runtime)
layer_objs = $(filter $(foreach l,$(DEPS_$(1)),$(2)/src/$(l)/%),$(3))

.SECONDEXPANSION:
$(BUILD)/tests/%: tests/%.c $$(call layer_objs,$$(firstword $$(subst /, ,$$*)),$(BUILD)/obj,$(LIB_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(call layer_objs,$(firstword $(subst /, ,$*)),$(BUILD)/obj,$(LIB_OBJ)) $(LDLIBS)

$(BUILD)/san-tests/%: tests/%.c $$(call layer_objs,$$(firstword $$(subst /, ,$$*)),$(BUILD)/san,$(SAN_OBJ))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -Itests -o $@ $< $(call layer_objs,$(firstword $(subst /, ,$*)),$(BUILD)/san,$(SAN_OBJ)) $(LDLIBS)

tests: $(BUILD)/llmfile $(TEST_BIN) $(SAN_TEST_BIN)

# The whole suite: C unit tests (plain and sanitized) and end-to-end tests, run by pytest.
test: tests
	$(PYTHON) -m pytest -q tests

model:
	bash tools/setup_default_model.sh

run: all model
	./$(BUILD)/llmfile -p "Once upon a time" -n 48 --temp 0

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
