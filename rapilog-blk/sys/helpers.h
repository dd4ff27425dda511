/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Prototypes of helpers.c, powerfail_signals.c and lifecycle_events.c; the
 * Rust files in sys/ declare the same functions by hand, and
 * tests/host/test_ffi_prototypes.py checks that they agree.
 */
#ifndef RAPILOG_HELPERS_H
#define RAPILOG_HELPERS_H

#include <linux/blkdev.h>
#include <linux/types.h>
#include <asm/pgtable_types.h>

struct bio;
struct bio_set;
struct block_device;
struct file;
struct gendisk;
struct page;
struct pci_dev;
struct task_struct;

struct file *rapilog_bdev_open(const char *path, void *holder);
sector_t rapilog_bdev_nr_sectors(struct block_device *bdev);
unsigned int rapilog_bdev_logical_block_size(struct block_device *bdev);
unsigned int rapilog_bdev_physical_block_size(struct block_device *bdev);
unsigned int rapilog_bdev_partno(struct block_device *bdev);
struct bio *rapilog_bio_alloc(struct block_device *bdev, unsigned short nr_vecs, bool write,
			      struct bio_set *bs);
void *rapilog_bio_disk_private(struct bio *bio);
int rapilog_disk_openers(struct gendisk *disk);
unsigned int rapilog_bio_op(struct bio *bio);
bool rapilog_bio_preflush(struct bio *bio);
bool rapilog_bio_fua(struct bio *bio);
void rapilog_bio_end(struct bio *bio, unsigned int status);
void rapilog_bio_copy(struct bio *bio, unsigned int skip, void *buf, unsigned int len, bool to_bio);
struct bio *rapilog_bio_split_to_limits(struct bio *bio);
u32 rapilog_bio_copy_crc(struct bio *bio, unsigned int skip, void *buf, unsigned int len, u32 crc,
			 u32 (*copy)(u32 crc, void *dst, const void *src, unsigned int len));
bool rapilog_cpu_has_crc32(void);
bool rapilog_cpu_copy_crc(void);
void rapilog_bio_remap(struct bio *bio, struct block_device *bdev);
struct bio *rapilog_bio_split_front(struct bio *bio, unsigned int sectors, struct bio_set *bs);
struct bio_set *rapilog_bioset_create(unsigned int pool_size, bool bvecs);
void rapilog_bioset_destroy(struct bio_set *bs);
blk_features_t rapilog_cache_features(void);
void *rapilog_page_address(struct page *page);
unsigned long rapilog_direct_map_addr(phys_addr_t phys);
unsigned long rapilog_page_level_size(unsigned int level);
bool rapilog_entry_present(pte_t *entry);
unsigned long rapilog_leaf_pfn(pte_t *leaf, unsigned int level);
pteval_t rapilog_leaf_flags_4k(pte_t *leaf, unsigned int level, bool writable);
void rapilog_leaf_wrprotect(pte_t *leaf);
void rapilog_pte_set(pte_t *ptep, unsigned long pfn, pteval_t flags);
void rapilog_pte_clear(pte_t *ptep);
void *rapilog_vmap_ro(struct page **pages, unsigned int count);
void rapilog_vunmap(const void *addr);
unsigned int rapilog_this_cpu(void);
void rapilog_preempt_disable(void);
void rapilog_preempt_enable(void);
void rapilog_get_task_struct(struct task_struct *t);
void rapilog_put_task_struct(struct task_struct *t);
unsigned int rapilog_memalloc_noio_save(void);
void rapilog_memalloc_noio_restore(unsigned int flags);

/* How a PCI device's DMA reaches memory (sys/iommu.rs). */
enum rapilog_dma_path {
	RAPILOG_DMA_UNKNOWN = 0,
	RAPILOG_DMA_TRANSLATED = 1,
	RAPILOG_DMA_BLOCKED = 2,
	RAPILOG_DMA_IDENTITY = 3,
	RAPILOG_DMA_NO_IOMMU = 4,
};
const char *rapilog_pci_name(struct pci_dev *pdev);
int rapilog_pci_dma_path(struct pci_dev *pdev);

/* Power-fail signals (sys/powerfail_signals.c). */
#define RAPILOG_POWERFAIL_BUTTON 1u
#define RAPILOG_POWERFAIL_NMI 2u
int rapilog_powerfail_arm(unsigned int sources, void (*fn)(void *ctx, unsigned int sources),
			  void *ctx);
void rapilog_powerfail_disarm(void);
void rapilog_powerfail_retarget(void *ctx);
void rapilog_power_off(void);

/* Machine-lifecycle notifiers (sys/lifecycle_events.c). */
#define RAPILOG_STOP_RESTART 1u
#define RAPILOG_STOP_HALT 2u
#define RAPILOG_STOP_POWER_OFF 3u
#define RAPILOG_PM_SUSPEND_PREPARE 1u
#define RAPILOG_PM_HIBERNATE_PREPARE 2u
#define RAPILOG_PM_RESUMED 3u
int rapilog_lifecycle_register(int (*stop)(void *ctx, unsigned int how),
			       int (*pm)(void *ctx, unsigned int event), void *ctx);
void rapilog_lifecycle_unregister(void);

#endif
