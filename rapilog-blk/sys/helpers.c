// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel functions rapilog's Rust code needs that are static inline or
 * macros (bindgen sees only real functions, and flag macros with __force
 * casts do not make it into the bindings). Each wrapper is one kernel call;
 * all logic stays in Rust, and the Rust side declares these prototypes by
 * hand in sys/; tests/host/test_ffi_prototypes.py checks that the two agree.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/highmem.h>
#include <linux/iommu.h>
#include <linux/mm.h>
#include <linux/pci.h>
#include <linux/preempt.h>
#include <linux/sched/mm.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "helpers.h"

/* --- the backing disk ---------------------------------------------------- */

/*
 * Read-write and claimed with a holder (exclusive), and no other writer may
 * open it while we hold it: only rapilog may write the log disk it fronts.
 */
struct file *rapilog_bdev_open(const char *path, void *holder)
{
	return bdev_file_open_by_path(path, BLK_OPEN_READ | BLK_OPEN_WRITE |
					    BLK_OPEN_RESTRICT_WRITES,
				      holder, NULL);
}

sector_t rapilog_bdev_nr_sectors(struct block_device *bdev)
{
	return bdev_nr_sectors(bdev);
}

unsigned int rapilog_bdev_logical_block_size(struct block_device *bdev)
{
	return bdev_logical_block_size(bdev);
}

unsigned int rapilog_bdev_physical_block_size(struct block_device *bdev)
{
	return bdev_physical_block_size(bdev);
}

unsigned int rapilog_bdev_partno(struct block_device *bdev)
{
	return bdev_partno(bdev);
}

/*
 * A bio for the log disk from the disk's own bio set (sys/backing.rs);
 * GFP_NOIO: we are in the I/O path. Sleeps on the set's mempool rather than
 * fail.
 */
struct bio *rapilog_bio_alloc(struct block_device *bdev, unsigned short nr_vecs, bool write,
			      struct bio_set *bs)
{
	return bio_alloc_bioset(bdev, nr_vecs, (write ? REQ_OP_WRITE : REQ_OP_READ) | REQ_SYNC,
				GFP_NOIO, bs);
}

/* --- bios arriving at /dev/rapilog0 -------------------------------------- */

void *rapilog_bio_disk_private(struct bio *bio)
{
	return bio->bi_bdev->bd_disk->private_data;
}

int rapilog_disk_openers(struct gendisk *disk)
{
	return disk_openers(disk);
}

unsigned int rapilog_bio_op(struct bio *bio)
{
	return bio_op(bio);
}

bool rapilog_bio_preflush(struct bio *bio)
{
	return bio->bi_opf & REQ_PREFLUSH;
}

bool rapilog_bio_fua(struct bio *bio)
{
	return bio->bi_opf & REQ_FUA;
}

/* Status codes shared with sys/bio.rs (enum Status). */
void rapilog_bio_end(struct bio *bio, unsigned int status)
{
	switch (status) {
	case 0:
		bio->bi_status = BLK_STS_OK;
		break;
	case 1:
		bio->bi_status = BLK_STS_NOTSUPP;
		break;
	default:
		bio->bi_status = BLK_STS_IOERR;
		break;
	}
	bio_endio(bio);
}

/*
 * Copies `len` bytes between `buf` and the bio's data, starting `skip` bytes
 * into the bio (the caller checked that skip + len fits).
 */
void rapilog_bio_copy(struct bio *bio, unsigned int skip, void *buf,
		      unsigned int len, bool to_bio)
{
	struct bvec_iter start = bio->bi_iter, iter;
	struct bio_vec bv;
	char *p = buf;

	bio_advance_iter(bio, &start, skip);
	start.bi_size = len;
	__bio_for_each_segment(bv, bio, iter, start) {
		if (to_bio)
			memcpy_to_bvec(&bv, p);
		else
			memcpy_from_bvec(p, &bv);
		p += bv.bv_len;
	}
}

/*
 * bio_split_to_limits(), skipped for a read or write no larger than the
 * queue's max_sectors: the only limit rapilog has is the size of a record
 * (max_hw_sectors), since it copies the data segment by segment and never
 * hands the bio to hardware. The block layer's check (bio_may_need_split)
 * sends every multi-page or unaligned bio through bio_split_rw, which
 * walks its segments for limits that do not apply here.
 */
struct bio *rapilog_bio_split_to_limits(struct bio *bio)
{
	if ((bio_op(bio) == REQ_OP_READ || bio_op(bio) == REQ_OP_WRITE) &&
	    bio->bi_iter.bi_size <= (queue_max_sectors(bdev_get_queue(bio->bi_bdev)) << SECTOR_SHIFT))
		return bio;
	return bio_split_to_limits(bio);
}

/*
 * Copies the bio's `len` bytes from `skip` on into `buf` through `copy`,
 * one mapped segment at a time: `crc = copy(crc, dst, src, n)`, which
 * copies `n` bytes and returns the CRC register after them (the fused copy
 * + CRC-32C of sys/copy_crc.rs). Returns the last register value.
 */
u32 rapilog_bio_copy_crc(struct bio *bio, unsigned int skip, void *buf, unsigned int len, u32 crc,
			 u32 (*copy)(u32 crc, void *dst, const void *src, unsigned int len))
{
	struct bvec_iter start = bio->bi_iter, iter;
	struct bio_vec bv;
	char *p = buf;

	bio_advance_iter(bio, &start, skip);
	start.bi_size = len;
	__bio_for_each_segment(bv, bio, iter, start) {
		void *src = bvec_kmap_local(&bv);

		crc = copy(crc, p, src, bv.bv_len);
		kunmap_local(src);
		p += bv.bv_len;
	}
	return crc;
}

/* Whether the CPU has the crc32 instruction (SSE4.2). */
bool rapilog_cpu_has_crc32(void)
{
	return boot_cpu_has(X86_FEATURE_XMM4_2);
}

/*
 * Whether the fused copy + CRC-32C is the faster way to fill a record: the
 * CPU has the crc32 instruction, and the kernel's crc32c() does not use
 * its AVX-512 VPCLMULQDQ code (lib/crc/x86/crc32.h), which beats three
 * crc32 streams; the features are the kernel's conditions for that code.
 */
bool rapilog_cpu_copy_crc(void)
{
	return boot_cpu_has(X86_FEATURE_XMM4_2) &&
	       !(boot_cpu_has(X86_FEATURE_VPCLMULQDQ) && boot_cpu_has(X86_FEATURE_AVX2) &&
		 boot_cpu_has(X86_FEATURE_AVX512BW) && boot_cpu_has(X86_FEATURE_AVX512VL) &&
		 !boot_cpu_has(X86_FEATURE_PREFER_YMM));
}

/* Sends the bio to `bdev` (same sector numbers) once our submit_bio returns. */
void rapilog_bio_remap(struct bio *bio, struct block_device *bdev)
{
	bio_set_dev(bio, bdev);
	submit_bio_noacct(bio);
}

/*
 * Splits off the first `sectors` sectors and returns them; the rest is
 * chained to them and resubmitted, to come back to our submit_bio after it
 * returns (the pattern of bio_split_to_limits: one allocation per call).
 */
struct bio *rapilog_bio_split_front(struct bio *bio, unsigned int sectors,
				    struct bio_set *bs)
{
	struct bio *split = bio_split(bio, sectors, GFP_NOIO, bs);

	if (IS_ERR(split))
		return NULL;
	bio_chain(split, bio);
	submit_bio_noacct(bio);
	return split;
}

/* @pool_size bios kept in reserve, and as many bvec arrays if @bvecs. */
struct bio_set *rapilog_bioset_create(unsigned int pool_size, bool bvecs)
{
	struct bio_set *bs = kzalloc(sizeof(*bs), GFP_KERNEL);

	if (bs && bioset_init(bs, pool_size, 0, bvecs ? BIOSET_NEED_BVECS : 0)) {
		kfree(bs);
		bs = NULL;
	}
	return bs;
}

void rapilog_bioset_destroy(struct bio_set *bs)
{
	bioset_exit(bs);
	kfree(bs);
}

/* --- /dev/rapilog0 ------------------------------------------------------- */

/*
 * The device has a volatile write cache with FUA as far as the block layer is
 * concerned, so flushes and FUA writes reach the driver, which completes them
 * once the preceding writes are in the region (the durability domain).
 */
blk_features_t rapilog_cache_features(void)
{
	return BLK_FEAT_WRITE_CACHE | BLK_FEAT_FUA;
}

/* --- bounce pages --------------------------------------------------------- */

/*
 * A bounce page's address, for sys/bounce.rs to copy region bytes into it
 * and checksum them in one pass. x86-64 has no highmem: every page is in
 * the direct map, at this address for its life.
 */
void *rapilog_page_address(struct page *page)
{
	return page_address(page);
}

/* --- the region ----------------------------------------------------------- */
/*
 * sys/region.rs maps the region with memremap() and owns the page-table
 * entries of that mapping and of its per-CPU window slots; these are the
 * x86 page-table accessors it needs (all static inline). The argument for
 * what they are used for is in sys/region.rs.
 */

/* Direct-map address of @phys (__va), to check that nothing maps it there. */
unsigned long rapilog_direct_map_addr(phys_addr_t phys)
{
	return (unsigned long)__va(phys);
}

/* Bytes one page-table entry at @level (enum pg_level) maps. */
unsigned long rapilog_page_level_size(unsigned int level)
{
	return page_level_size(level);
}

/* Whether a kernel page-table entry of any level maps something. */
bool rapilog_entry_present(pte_t *entry)
{
	return pte_flags(*entry) & _PAGE_PRESENT;
}

/* First page frame a leaf entry at @level (4K, 2M or 1G) maps. */
unsigned long rapilog_leaf_pfn(pte_t *leaf, unsigned int level)
{
	switch (level) {
	case PG_LEVEL_4K:
		return pte_pfn(*leaf);
	case PG_LEVEL_2M:
		return pmd_pfn(*(pmd_t *)leaf);
	default:
		return pud_pfn(*(pud_t *)leaf);
	}
}

/*
 * The attributes of a leaf entry at @level as a 4 KiB PTE's (a large
 * page's PAT bit sits elsewhere: pgprot_large_2_4k), writable (RW and Dirty,
 * as PAGE_KERNEL has them) or not (neither, as PAGE_KERNEL_RO: Dirty without
 * RW would mean a shadow-stack page).
 */
pteval_t rapilog_leaf_flags_4k(pte_t *leaf, unsigned int level, bool writable)
{
	pteval_t flags;

	switch (level) {
	case PG_LEVEL_4K:
		flags = pte_flags(*leaf);
		break;
	case PG_LEVEL_2M:
		flags = pgprot_val(pgprot_large_2_4k(__pgprot(pmd_flags(*(pmd_t *)leaf))));
		break;
	default:
		flags = pgprot_val(pgprot_large_2_4k(__pgprot(pud_flags(*(pud_t *)leaf))));
		break;
	}
	if (writable)
		return flags | _PAGE_RW | _PAGE_DIRTY;
	return flags & ~(_PAGE_RW | _PAGE_DIRTY);
}

/*
 * Makes a kernel leaf entry of any level read-only: RW and Dirty are the
 * same bits at every level, and change_page_attr() writes large leaves with
 * set_pte_atomic() too. The caller flushes the TLBs.
 */
void rapilog_leaf_wrprotect(pte_t *leaf)
{
	set_pte_atomic(leaf, pte_clear_flags(*leaf, _PAGE_RW | _PAGE_DIRTY));
}

/* Points the kernel PTE @ptep at @pfn with 4 KiB attributes @flags. */
void rapilog_pte_set(pte_t *ptep, unsigned long pfn, pteval_t flags)
{
	set_pte(ptep, pfn_pte(pfn, __pgprot(flags)));
}

/* Clears a kernel PTE (pte_clear() wants init_mm, which is not exported). */
void rapilog_pte_clear(pte_t *ptep)
{
	set_pte(ptep, __pte(0));
}

/* @count times @page, read-only: a stretch of vmalloc space we own. */
void *rapilog_vmap_ro(struct page **pages, unsigned int count)
{
	return vmap(pages, count, VM_MAP, PAGE_KERNEL_RO);
}

void rapilog_vunmap(const void *addr)
{
	vunmap(addr);
}

unsigned int rapilog_this_cpu(void)
{
	return smp_processor_id();
}

void rapilog_preempt_disable(void)
{
	preempt_disable();
}

void rapilog_preempt_enable(void)
{
	preempt_enable();
}

/* --- threads --------------------------------------------------------------- */

/* Implicit GFP_NOIO for the current task until the restore (sys/kthread.rs). */
unsigned int rapilog_memalloc_noio_save(void)
{
	return memalloc_noio_save();
}

void rapilog_memalloc_noio_restore(unsigned int flags)
{
	memalloc_noio_restore(flags);
}

void rapilog_get_task_struct(struct task_struct *t)
{
	get_task_struct(t);
}

void rapilog_put_task_struct(struct task_struct *t)
{
	put_task_struct(t);
}

/* --- the IOMMU fence ------------------------------------------------------ */

const char *rapilog_pci_name(struct pci_dev *pdev)
{
	return pci_name(pdev);
}

/*
 * How @pdev's DMA reaches memory, from the type of its IOMMU domain (the
 * type flags are macros). Under the device lock, so no driver binds or
 * unbinds (and changes the domain) while the domain is looked at.
 */
int rapilog_pci_dma_path(struct pci_dev *pdev)
{
	struct iommu_domain *domain;
	int path;

	device_lock(&pdev->dev);
	domain = iommu_get_domain_for_dev(&pdev->dev);
	if (!domain)
		path = RAPILOG_DMA_NO_IOMMU;
	else if (domain->type == IOMMU_DOMAIN_BLOCKED)
		path = RAPILOG_DMA_BLOCKED;
	else if (domain->type == IOMMU_DOMAIN_IDENTITY)
		path = RAPILOG_DMA_IDENTITY;
	else if (domain->type & __IOMMU_DOMAIN_PAGING)
		path = RAPILOG_DMA_TRANSLATED;
	else
		path = RAPILOG_DMA_UNKNOWN;
	device_unlock(&pdev->dev);
	return path;
}
