# SPDX-License-Identifier: BSD-2-Clause
# pcapline: one non-recursive build. Every output goes under build/ (build/san with SAN=1).
#   make deps | all | test | unit | fuzz | bench | demo | install | clean     (V=1: verbose)

VERSION := 0.1.0
PREFIX ?= /usr/local
BUILD ?= build
CC ?= cc
FUZZ_CC ?= clang

ifeq ($(SAN),1)
BUILD := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1
else
OPT := -O2
endif

PKGS := libpcap openssl liblz4 yaml-0.1 sqlite3
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev
CFLAGS ?= $(OPT) -g
CFLAGS += -std=c11 -D_GNU_SOURCE -DPCAPLINE_VERSION='"$(VERSION)"' \
	-Wall -Wextra -Wshadow -Wformat=2 -Wno-unused-parameter -MMD -MP \
	-Iproto -Ishared -Isensor -Ireceiver -Ireceiver/store $(PKG_CFLAGS) $(SANFLAGS)
LDFLAGS += $(SANFLAGS)
LDLIBS += $(PKG_LIBS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

LIB_SRC := $(wildcard proto/*.c shared/*.c)
SENSOR_SRC := $(wildcard sensor/*.c)
RECEIVER_SRC := $(filter-out receiver/cli/%,$(wildcard receiver/*.c receiver/*/*.c))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
SENSOR_OBJ := $(SENSOR_SRC:%.c=$(BUILD)/obj/%.o)
RECEIVER_OBJ := $(RECEIVER_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libpcapline.a
SENSOR := $(BUILD)/pcapline-sensor
RECEIVER := $(BUILD)/pcapline-receiver
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
# Parsers outside proto/ and shared/ that have a fuzz target are linked in as well.
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/fuzzobj/%.o) $(BUILD)/fuzzobj/receiver/l4/l4.o

.SECONDARY:
.PHONY: all deps test unit fuzz fuzz-seeds integration bench demo install clean
all: $(SENSOR) $(RECEIVER)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@[ -n "$(Q)" ] && echo "  CC      $<" || true
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(SENSOR): $(SENSOR_OBJ) $(LIB)
	@[ -n "$(Q)" ] && echo "  LD      $@" || true
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The receiver's HTTP API (receiver/api/) serves exports with the CLI's export engine:
# every receiver/cli module but main.c and the cmd_*.c commands, kept in EXPORT_LIB.
CLI_PKGS := sqlite3 libarchive jansson
CLI_CFLAGS := $(shell pkg-config --cflags $(CLI_PKGS) 2>/dev/null)
CLI_LIBS := $(shell pkg-config --libs $(CLI_PKGS) 2>/dev/null || echo -lsqlite3 -larchive -ljansson)
CLI_SRC := $(wildcard receiver/cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
EXPORT_OBJ := $(filter-out $(BUILD)/obj/receiver/cli/main.o $(BUILD)/obj/receiver/cli/cmd_%.o,$(CLI_OBJ))
EXPORT_LIB := $(BUILD)/libpcapline-export.a
API_OBJ := $(filter $(BUILD)/obj/receiver/api/%,$(RECEIVER_OBJ))
API_LIBS := $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd) -lpthread
$(API_OBJ): CFLAGS += -Ireceiver/cli $(CLI_CFLAGS) $(shell pkg-config --cflags libmicrohttpd 2>/dev/null)

$(EXPORT_LIB): $(EXPORT_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(RECEIVER): $(RECEIVER_OBJ) $(EXPORT_LIB) $(LIB)
	@[ -n "$(Q)" ] && echo "  LD      $@" || true
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(API_LIBS) $(CLI_LIBS) $(LDLIBS)

# A unit test of receiver code lists the receiver objects it needs here.
$(BUILD)/tests/test_index: $(addprefix $(BUILD)/obj/receiver/store/,index.o retention.o names.o)
$(BUILD)/tests/test_store: $(addprefix $(BUILD)/obj/receiver/store/,store.o index.o retention.o names.o)
$(BUILD)/tests/test_namelog: $(BUILD)/obj/receiver/store/names.o
$(BUILD)/tests/test_names: $(BUILD)/obj/sensor/names.o
$(BUILD)/tests/test_spool: $(BUILD)/obj/sensor/spool.o
$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	@[ -n "$(Q)" ] && echo "  TEST    $@" || true
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(filter %.o,$^) $(LIB) $(LDLIBS) -lcmocka

# pcapline, the repository client (export, snapshot, import): receiver/cli/*.c (CLI_*
# above). Its libraries are kept in CLI_PKGS, apart from PKGS, so that adding sqlite3 or
# jansson to PKGS elsewhere changes nothing here (pkg-config and the linker take repeats).
CLI := $(BUILD)/pcapline
$(CLI_OBJ): CFLAGS += $(CLI_CFLAGS)
all: $(CLI)

# The l4 and reindex subcommands link the receiver's L4 module (connections, TCP
# reassembly) and dissection path; the export engine (shared with the API) reads the
# position files the dissection path writes, so the index module comes along.
L4_OBJ := $(BUILD)/obj/receiver/l4/l4.o
DISSECT_OBJ := $(BUILD)/obj/receiver/dissect/dissect.o $(BUILD)/obj/receiver/store/index.o
# import checks name-history addresses with the receiver's parser.
NAMES_OBJ := $(BUILD)/obj/receiver/store/names.o
$(CLI): $(filter-out $(EXPORT_OBJ),$(CLI_OBJ)) $(DISSECT_OBJ) $(NAMES_OBJ) $(L4_OBJ) $(EXPORT_LIB) $(LIB)
	@[ -n "$(Q)" ] && echo "  LD      $@" || true
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(CLI_LIBS) $(LDLIBS)

$(BUILD)/tests/test_l4: $(L4_OBJ)
$(BUILD)/tests/test_l4: CFLAGS += -Ireceiver/l4

# The merge unit test links the one CLI module it tests (pattern rule above).
$(BUILD)/tests/test_merge: $(addprefix $(BUILD)/obj/receiver/cli/,merge.o pcapout.o timearg.o)
$(BUILD)/tests/test_merge: CFLAGS += -Ireceiver/cli

# libFuzzer targets: always clang with ASan/UBSan, objects kept apart from the main build.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Iproto -Ishared -Ireceiver/l4 $(PKG_CFLAGS) \
	-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
$(BUILD)/fuzzobj/%.o: %.c
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(dir $@)
	@[ -n "$(Q)" ] && echo "  FUZZ    $@" || true
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS)

fuzz: $(FUZZ_BIN)
	@echo "fuzz targets in $(BUILD)/fuzz; run e.g. $(BUILD)/fuzz/fuzz_frame -max_total_time=600 tests/fuzz/corpus/frame"

deps:
	@scripts/deps.sh

unit: $(UNIT_BIN)
	@pass=0; fail=0; for t in $(UNIT_BIN); do \
		if $$t; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAILED: $$t"; fi; \
	done; echo "unit test programs: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

fuzz-seeds: $(FUZZ_BIN)
	@pass=0; fail=0; for f in $(FUZZ_BIN); do n=$${f##*/fuzz_}; \
		if $$f -runs=0 tests/fuzz/corpus/$$n >$(BUILD)/fuzz/$$n.log 2>&1; then pass=$$((pass+1)); \
		else fail=$$((fail+1)); echo "FAILED: $$f (see $(BUILD)/fuzz/$$n.log)"; fi; \
	done; echo "fuzz seed corpora: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

integration: all
	@scripts/run-pytest.sh $(BUILD)

test: deps
	@$(MAKE) --no-print-directory all unit fuzz-seeds
	@$(MAKE) --no-print-directory integration

bench: deps
	@$(MAKE) --no-print-directory all
	@tests/bench/bench.sh $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh $(BUILD)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/pcapline
	install -m 755 $(SENSOR) $(RECEIVER) $(CLI) $(DESTDIR)$(PREFIX)/bin/
	install -m 755 scripts/pcapline-certs $(DESTDIR)$(PREFIX)/bin/
	install -m 644 config/sensor.yaml config/receiver.yaml $(DESTDIR)/etc/pcapline/

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
