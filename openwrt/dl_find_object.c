/*
 * _dl_find_object() for static musl binaries built by cross-build.sh.
 *
 * Rust's musl targets link an unwinder as libunwind.a. cross-build.sh gives
 * them Debian's libgcc_eh.a from the gcc cross compiler, which was built
 * against glibc 2.35 and finds unwind tables with glibc's _dl_find_object();
 * musl has no such function. This one answers the same question with
 * dl_iterate_phdr(), which musl has (for static binaries too). The unwinder
 * runs for backtraces (RUST_BACKTRACE) and, in the unit tests (panic=unwind),
 * for every caught panic.
 *
 * The struct is glibc's for targets without DLFO_STRUCT_HAS_EH_DBASE and
 * DLFO_STRUCT_HAS_EH_COUNT (MIPS, AArch64; see glibc's <dlfcn.h>).
 */
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>

#if defined(__arm__) || defined(__i386__) || defined(__nios2__)
#error "this target's struct dl_find_object has more fields"
#endif

struct dl_find_object {
	unsigned long long dlfo_flags;
	void *dlfo_map_start;
	void *dlfo_map_end;
	void *dlfo_link_map;
	void *dlfo_eh_frame;
	unsigned long long dlfo_reserved[7];
};

struct query {
	uintptr_t pc;
	struct dl_find_object *out;
};

static int visit(struct dl_phdr_info *info, size_t size, void *data)
{
	struct query *q = data;
	const ElfW(Phdr) *eh = 0;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	int hit = 0;
	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *p = &info->dlpi_phdr[i];
		if (p->p_type == PT_LOAD) {
			uintptr_t start = info->dlpi_addr + p->p_vaddr;
			uintptr_t end = start + p->p_memsz;
			if (q->pc >= start && q->pc < end)
				hit = 1;
			if (start < lo)
				lo = start;
			if (end > hi)
				hi = end;
		} else if (p->p_type == PT_GNU_EH_FRAME) {
			eh = p;
		}
	}
	if (!hit)
		return 0;
	q->out->dlfo_flags = 0;
	q->out->dlfo_map_start = (void *)lo;
	q->out->dlfo_map_end = (void *)hi;
	q->out->dlfo_link_map = 0;
	q->out->dlfo_eh_frame = eh ? (void *)(info->dlpi_addr + eh->p_vaddr) : 0;
	return 1;
}

int _dl_find_object(void *address, struct dl_find_object *result)
{
	struct query q = { (uintptr_t)address, result };
	return dl_iterate_phdr(visit, &q) ? 0 : -1;
}
