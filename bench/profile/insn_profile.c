// SPDX-License-Identifier: GPL-2.0
/*
 * insn_profile: a QEMU TCG plugin that counts executed guest instructions
 * per translation block (TB), for `bench/run.py --only profile`.
 *
 * Every translated block gets a record {start address, instructions}; an
 * execution callback adds one to its count each time it runs. Under
 * `-icount` the translator ends a block after every iteration of a `rep`
 * string instruction, so a 4 KiB `rep movsb` executes its block 4,096
 * times and counts 4,096: the same instructions the guest clock counts.
 *
 * Control is a FIFO (argument fifo=PATH) read by a thread of the plugin,
 * one command a line:
 *   reset        zero every count (before the measured job)
 *   dump FILE    write "vaddr instructions executions" for every block that
 *                ran since the reset, to FILE.tmp, then rename it to FILE
 * The bench waits for FILE to appear. With one vCPU (icount serializes
 * vCPUs anyway) and the guest idle around the commands, the counts are
 * read while nothing adds to them.
 *
 * Build (bench/profile.py does it): gcc -O2 -shared -fPIC $(pkg-config
 * --cflags glib-2.0) -I<qemu-10.0.2>/include/qemu insn_profile.c -o
 * insn_profile.so; the header comes from Debian's qemu source
 * (qemu_10.0.2+ds.orig.tar.xz), the host's QEMU is 10.0.2.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

struct block {
	uint64_t vaddr;
	uint64_t insns;
	uint64_t execs;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct block **blocks;
static size_t nblocks, capblocks;
static char fifo_path[4096];

static void on_exec(unsigned int vcpu, void *udata)
{
	(void)vcpu;
	((struct block *)udata)->execs++;
}

static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	(void)id;
	struct block *b = calloc(1, sizeof(*b));

	if (!b)
		return;
	b->vaddr = qemu_plugin_tb_vaddr(tb);
	b->insns = qemu_plugin_tb_n_insns(tb);
	pthread_mutex_lock(&lock);
	if (nblocks == capblocks) {
		size_t cap = capblocks ? 2 * capblocks : 65536;
		struct block **n = realloc(blocks, cap * sizeof(*n));

		if (!n) {
			pthread_mutex_unlock(&lock);
			free(b);
			return;
		}
		blocks = n;
		capblocks = cap;
	}
	blocks[nblocks++] = b;
	pthread_mutex_unlock(&lock);
	qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void dump(const char *path)
{
	char tmp[4200];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < nblocks; i++)
		if (blocks[i]->execs)
			fprintf(f, "%llx %llu %llu\n", (unsigned long long)blocks[i]->vaddr,
				(unsigned long long)blocks[i]->insns,
				(unsigned long long)blocks[i]->execs);
	pthread_mutex_unlock(&lock);
	fclose(f);
	rename(tmp, path);
}

static void *control(void *arg)
{
	(void)arg;
	char line[4200];

	for (;;) {
		FILE *f = fopen(fifo_path, "r");

		if (!f) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		while (fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = 0;
			if (!strcmp(line, "reset")) {
				pthread_mutex_lock(&lock);
				for (size_t i = 0; i < nblocks; i++)
					blocks[i]->execs = 0;
				pthread_mutex_unlock(&lock);
			} else if (!strncmp(line, "dump ", 5)) {
				dump(line + 5);
			}
		}
		fclose(f);
	}
	return NULL;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
					   int argc, char **argv)
{
	pthread_t t;

	(void)info;
	for (int i = 0; i < argc; i++)
		if (!strncmp(argv[i], "fifo=", 5))
			snprintf(fifo_path, sizeof(fifo_path), "%s", argv[i] + 5);
	if (!fifo_path[0])
		return -1;
	if (pthread_create(&t, NULL, control, NULL))
		return -1;
	pthread_detach(t);
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
	return 0;
}
