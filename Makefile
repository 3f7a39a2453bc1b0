# SPDX-License-Identifier: BSD-2-Clause
# pcapline: one non-recursive build. Every output goes under build/ (build/san with SAN=1).
#   make deps | all | test | unit | fuzz | bench | demo | install | uninstall | format | clean  (V=1: verbose)

VERSION := 0.1.0
PREFIX ?= /usr/local
# Wireshark's global extcap folder (its pkg-config file names it; else Debian's path).
# For one user only: make install EXTCAP_DIR=$$HOME/.local/lib/wireshark/extcap
EXTCAP_DIR ?= $(or $(shell pkg-config --variable=extcap_dir wireshark 2>/dev/null),\
	/usr/lib/$(or $(shell gcc -print-multiarch 2>/dev/null),x86_64-linux-gnu)/wireshark/extcap)
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

PKGS := libpcap openssl liblz4 yaml-0.1 sqlite3 libarchive jansson libmicrohttpd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lpcap -lssl -lcrypto -llz4 -lyaml -lsqlite3 -larchive -ljansson -lmicrohttpd) -lev -lpthread
# CFLAGS and LDFLAGS belong to the user (make CFLAGS=-O0); what the build needs is kept
# in PL_CFLAGS and always applied. Includes are full paths from the top: "shared/log.h".
CFLAGS ?= $(OPT) -g
PL_CFLAGS := -std=c11 -D_GNU_SOURCE -DPCAPLINE_VERSION='"$(VERSION)"' \
	-Wall -Wextra -Wshadow -Wformat=2 -Wno-unused-parameter -MMD -MP \
	-I. $(PKG_CFLAGS) $(SANFLAGS)
PL_LDFLAGS := $(SANFLAGS)
LDLIBS += $(PKG_LIBS)

ifeq ($(V),1)
Q :=
else
Q :=@
endif

# One static library per folder (build/lib/lib<folder>.a, '/' -> '_'); the programs'
# main.c files stay out of them. A program links the libraries it needs as one group,
# so their order does not matter.
LIB_DIRS := proto shared sensor receiver/ingest receiver/store receiver/repo receiver/l4 \
	receiver/dissect receiver/api receiver/cli receiver/outputs
libname = $(BUILD)/lib/lib$(subst /,_,$(1)).a
dir_src = $(filter-out $(1)/main.c,$(wildcard $(1)/*.c))
$(foreach d,$(LIB_DIRS),$(eval $(call libname,$(d)): $(patsubst %.c,$(BUILD)/obj/%.o,$(call dir_src,$(d)))))
LIBS_OF = $(foreach d,$(1),$(call libname,$(d)))

SENSOR := $(BUILD)/pcapline-sensor
RECEIVER := $(BUILD)/pcapline-receiver
CLI := $(BUILD)/pcapline
EXTCAP := $(BUILD)/pcapline-extcap
SENSOR_LIBS := $(call LIBS_OF,sensor proto shared)
RECEIVER_LIBS := $(call LIBS_OF,receiver/ingest receiver/store receiver/dissect receiver/l4 \
	receiver/api receiver/outputs receiver/repo proto shared)
CLI_LIBS := $(call LIBS_OF,receiver/cli receiver/repo receiver/dissect receiver/l4 proto shared)
ALL_LIBS := $(call LIBS_OF,$(LIB_DIRS))

# Unit tests mirror the tree: tests/unit/<folder>/test_<module>.c -> build/tests/<folder>/.
UNIT_SRC := $(shell find tests/unit -name 'test_*.c' | sort)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)

.SECONDARY:
.PHONY: all deps test unit fuzz fuzz-seeds integration bench demo install uninstall clean format format-check
all: $(SENSOR) $(RECEIVER) $(CLI) $(EXTCAP)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@[ -n "$(Q)" ] && echo "  CC      $<" || true
	$(Q)$(CC) $(PL_CFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/lib/%.a:
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

link = $(CC) $(PL_LDFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) -Wl,--start-group $(filter %.a,$^) -Wl,--end-group $(LDLIBS)

$(SENSOR): $(BUILD)/obj/sensor/main.o $(SENSOR_LIBS)
	@[ -n "$(Q)" ] && echo "  LD      $@" || true
	$(Q)$(link)

$(RECEIVER): $(BUILD)/obj/receiver/main.o $(RECEIVER_LIBS)
	@[ -n "$(Q)" ] && echo "  LD      $@" || true
	$(Q)$(link)

$(CLI): $(BUILD)/obj/receiver/cli/main.o $(CLI_LIBS)
	@[ -n "$(Q)" ] && echo "  LD      $@" || true
	$(Q)$(link)

# Wireshark's extcap program: the HTTP client of shared/ and nothing of the receiver.
$(EXTCAP): $(BUILD)/obj/extcap/main.o $(call LIBS_OF,shared)
	@[ -n "$(Q)" ] && echo "  LD      $@" || true
	$(Q)$(link)

# A unit test links every folder library; the linker takes only what the module uses.
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/obj/tests/unit/testutil.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	@[ -n "$(Q)" ] && echo "  TEST    $@" || true
	$(Q)$(link) -lcmocka

# libFuzzer targets: always clang with ASan/UBSan, objects kept apart from the main build.
# The parsers they reach are compiled again from these folders.
FUZZ_DIRS := proto shared receiver/l4 receiver/repo
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -DPCAPLINE_VERSION='"$(VERSION)"' -g -O1 -I. $(PKG_CFLAGS) \
	-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB_OBJ := $(foreach d,$(FUZZ_DIRS),$(patsubst %.c,$(BUILD)/fuzzobj/%.o,$(call dir_src,$(d))))
$(BUILD)/fuzzobj/%.o: %.c
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<
$(BUILD)/fuzz/libfuzzparsers.a: $(FUZZ_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^
$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/fuzz/libfuzzparsers.a
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
	@$(MAKE) --no-print-directory format-check all unit fuzz-seeds
	@$(MAKE) --no-print-directory integration

bench: deps
	@$(MAKE) --no-print-directory all
	@tests/bench/bench.sh $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh $(BUILD)

# Programs under PREFIX, configuration in SYSCONFDIR (existing files are kept), systemd
# units, sysusers.d and tmpfiles.d entries where systemd looks for PREFIX's (the units'
# ExecStart= follows PREFIX). Then: systemd-sysusers; systemd-tmpfiles --create;
# systemctl daemon-reload (README: "Running as a service").
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
EXAMPLEDIR ?= $(PREFIX)/share/doc/pcapline/examples
UNITS := systemd/pcapline-sensor.service systemd/pcapline-receiver.service
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(EXAMPLEDIR)
	install -d -m 750 $(DESTDIR)$(SYSCONFDIR)/pcapline
	install -m 755 $(SENSOR) $(RECEIVER) $(CLI) $(DESTDIR)$(PREFIX)/bin/
	install -m 755 scripts/pcapline-certs $(DESTDIR)$(PREFIX)/bin/
	install -m 644 config/sensor.yaml config/receiver.yaml $(DESTDIR)$(EXAMPLEDIR)/
	for f in sensor.yaml receiver.yaml; do [ -e $(DESTDIR)$(SYSCONFDIR)/pcapline/$$f ] || \
		install -m 640 config/$$f $(DESTDIR)$(SYSCONFDIR)/pcapline/$$f; done
	for u in $(UNITS); do sed -e 's|/usr/local/bin/|$(PREFIX)/bin/|g' \
		-e 's|/etc/pcapline/|$(SYSCONFDIR)/pcapline/|g' $$u > $(DESTDIR)$(UNITDIR)/$${u#systemd/}.tmp && \
		chmod 644 $(DESTDIR)$(UNITDIR)/$${u#systemd/}.tmp && \
		mv $(DESTDIR)$(UNITDIR)/$${u#systemd/}.tmp $(DESTDIR)$(UNITDIR)/$${u#systemd/}; done
	install -m 644 systemd/pcapline.sysusers $(DESTDIR)$(SYSUSERSDIR)/pcapline.conf
	sed -e 's|/etc/pcapline|$(SYSCONFDIR)/pcapline|g' systemd/pcapline.tmpfiles \
		> $(DESTDIR)$(TMPFILESDIR)/pcapline.conf && chmod 644 $(DESTDIR)$(TMPFILESDIR)/pcapline.conf
	install -d $(DESTDIR)$(EXTCAP_DIR)
	install -m 755 $(EXTCAP) $(DESTDIR)$(EXTCAP_DIR)/

# Removes what install put down, except the configuration in SYSCONFDIR/pcapline.
uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,pcapline-sensor pcapline-receiver pcapline pcapline-certs)
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,pcapline-sensor.service pcapline-receiver.service)
	rm -f $(DESTDIR)$(SYSUSERSDIR)/pcapline.conf $(DESTDIR)$(TMPFILESDIR)/pcapline.conf
	rm -rf $(DESTDIR)$(EXAMPLEDIR)
	rm -f $(DESTDIR)$(EXTCAP_DIR)/pcapline-extcap

# The tree is formatted with .clang-format; format-check lists files that are not.
FORMAT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find proto shared sensor receiver tests -name '*.[ch]')
format:
	@clang-format -i $(FORMAT_SRC)
format-check:
	@bad=0; for f in $(FORMAT_SRC); do clang-format $$f | cmp -s - $$f || { echo "not formatted: $$f (make format)"; bad=$$((bad+1)); }; done; \
		echo "format check: $$bad files not formatted"; [ $$bad -eq 0 ]

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
