// SPDX-License-Identifier: MIT
/*
 * virtio-blk on a raw image (regular file or block device), buffered I/O.
 * Requests are served by a few worker threads (blk_io.c), never on the
 * event loop; this file says what each request does.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/blk_io.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_mmio.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define VIRTIO_ID_BLOCK         2
#define VIRTIO_BLK_F_SEG_MAX    (1ULL << 2)
#define VIRTIO_BLK_F_RO         (1ULL << 5)
#define VIRTIO_BLK_F_BLK_SIZE   (1ULL << 6)
#define VIRTIO_BLK_F_FLUSH      (1ULL << 9)
#define VIRTIO_BLK_F_DISCARD    (1ULL << 13)
#define VIRTIO_BLK_F_WRITE_ZEROES (1ULL << 14)

#define VIRTIO_BLK_S_OK         0
#define VIRTIO_BLK_S_IOERR      1
#define VIRTIO_BLK_S_UNSUPP     2

#define SECTOR_SHIFT            9
#define BLK_ID_BYTES            20
#define BLK_QUEUE_SIZE          256
#define BLK_MAX_DISCARD_SECTORS (1U << 22)      /* 2 GiB per range */

struct blk_config {             /* virtio 1.1, 5.2.4 */
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t blk_size;
	uint8_t physical_block_exp;
	uint8_t alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback;
	uint8_t unused0[3];
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));

struct blk_discard_range {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

struct blk {
	struct virtio_device *dev;
	struct disk_config cfg;
	char path[PATH_MAX];
	char shown[512];                /* path escaped, for messages: maybe the stream's */
	char serial[BLK_ID_BYTES + 1];
	int fd;
	bool released;                  /* fd is /dev/null: a migration's destination has the image */
	uint64_t size;                  /* bytes, a multiple of 512 */
	struct blk_config config;
	struct virtio_device_ops ops;   /* blk_ops, adjusted for read-only */
	struct blk_io io;
};

int disk_config_parse(char *arg, struct disk_config *cfg)
{
	char *opt;

	memset(cfg, 0, sizeof(*cfg));
	/* strsep, not strtok: ",readonly" must not read as path "readonly". */
	cfg->path = strsep(&arg, ",");
	if (!cfg->path || !*cfg->path) {
		pr_err("--disk: missing image path");
		return -1;
	}
	while ((opt = strsep(&arg, ","))) {
		if (!strcmp(opt, "readonly") || !strcmp(opt, "ro")) {
			cfg->readonly = true;
		} else if (!strncmp(opt, "serial=", 7) && strlen(opt + 7) <= BLK_ID_BYTES) {
			cfg->serial = opt + 7;
		} else {
			pr_err("--disk %s: unknown or bad option '%s' (readonly, serial=ID of up to 20 bytes)",
			       cfg->path, opt);
			return -1;
		}
	}
	return 0;
}

/* Total bytes the request's data segments cover, with the header and the
 * status byte removed: out[] past 16 header bytes; in[] minus its last byte. */
static int blk_data_iov(const struct vq_elem *e, bool to_guest, struct iovec *iov,
			unsigned *n, uint64_t *len)
{
	const struct iovec *src = to_guest ? e->in : e->out;
	unsigned cnt = to_guest ? e->n_in : e->n_out;
	size_t skip = to_guest ? 0 : sizeof(struct blk_req_hdr);
	uint64_t total = (to_guest ? e->in_len - 1 : e->out_len - skip);

	*n = 0;
	*len = total;
	for (unsigned i = 0; i < cnt && total; i++) {
		size_t seg = src[i].iov_len;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		seg -= skip;
		if (seg > total)
			seg = total;
		iov[(*n)++] = (struct iovec){ (uint8_t *)src[i].iov_base + skip, seg };
		total -= seg;
		skip = 0;
	}
	return 0;
}

static bool blk_range_ok(const struct blk *b, uint64_t sector, uint64_t len)
{
	uint64_t off;

	if (sector > b->size >> SECTOR_SHIFT || len % 512)
		return false;
	off = sector << SECTOR_SHIFT;
	return len <= b->size - off;
}

/* Move len bytes between the image at off and iov[0..n), which it uses up;
 * a short transfer goes on where it stopped. */
static bool blk_xfer(struct blk *b, struct iovec *iov, unsigned n, off_t off, uint64_t len,
		     bool read)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t r = read ? preadv(b->fd, iov, (int)n, off) : pwritev(b->fd, iov, (int)n, off);
		size_t adv;

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		done += (uint64_t)r;
		off += r;
		adv = (size_t)r;
		while (n && adv >= iov->iov_len) {
			adv -= iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (uint8_t *)iov->iov_base + adv;
			iov->iov_len -= adv;
		}
	}
	return true;
}

static uint8_t blk_rw(struct blk *b, const struct vq_elem *e, uint64_t sector, bool read,
		      uint32_t *written)
{
	struct iovec iov[VQ_MAX_SG];
	unsigned n;
	uint64_t len;

	blk_data_iov(e, read, iov, &n, &len);
	if (!blk_range_ok(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	if (!read && b->cfg.readonly)
		return VIRTIO_BLK_S_IOERR;
	if (!blk_xfer(b, iov, n, (off_t)(sector << SECTOR_SHIFT), len, read))
		return VIRTIO_BLK_S_IOERR;
	if (read)
		*written = (uint32_t)len;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_discard(struct blk *b, const struct vq_elem *e)
{
	struct blk_discard_range r;
	size_t off = sizeof(struct blk_req_hdr);
	uint64_t nranges = (e->out_len - off) / sizeof(r);

	if (b->cfg.readonly)
		return VIRTIO_BLK_S_IOERR;
	if (nranges != 1 || (e->out_len - off) % sizeof(r))
		return VIRTIO_BLK_S_UNSUPP;     /* we advertise max_*_seg = 1 */
	iov_to_buf(e->out, e->n_out, off, &r, sizeof(r));
	if (r.num_sectors > BLK_MAX_DISCARD_SECTORS ||
	    !blk_range_ok(b, r.sector, (uint64_t)r.num_sectors << SECTOR_SHIFT))
		return VIRTIO_BLK_S_IOERR;
	/* Punching a hole reads back as zeroes: good for both discard and write-zeroes. */
	if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(r.sector << SECTOR_SHIFT), (off_t)r.num_sectors << SECTOR_SHIFT) < 0)
		return VIRTIO_BLK_S_IOERR;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_get_id(struct blk *b, const struct vq_elem *e, uint32_t *written)
{
	struct iovec iov[VQ_MAX_SG];
	unsigned n;
	uint64_t len;
	char id[BLK_ID_BYTES] = { 0 };

	blk_data_iov(e, true, iov, &n, &len);
	memcpy(id, b->serial, strnlen(b->serial, BLK_ID_BYTES));
	*written = (uint32_t)iov_from_buf(iov, n, 0, id, len < BLK_ID_BYTES ? len : BLK_ID_BYTES);
	return VIRTIO_BLK_S_OK;
}

/* Serve one request; returns the bytes written into its "in" buffers. */
static uint32_t blk_serve_one(struct blk *b, struct blk_io_worker *w, struct blk_io_req *r)
{
	struct vq_elem *e = &r->elem;
	uint32_t written = 0;
	uint8_t status;

	if (e->out_len < sizeof(r->hdr) || e->in_len < 1) {
		/* No room even for a status byte: nothing we can say. */
		return 0;
	}
	switch (r->hdr.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		status = blk_rw(b, e, r->hdr.sector, r->hdr.type == VIRTIO_BLK_T_IN, &written);
		break;
	case VIRTIO_BLK_T_FLUSH:
		blk_io_flush_wait(&b->io, w);
		status = fdatasync(b->fd) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_GET_ID:
		status = blk_get_id(b, e, &written);
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		status = blk_discard(b, e);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	iov_from_buf(e->in, e->n_in, e->in_len - 1, &status, 1);
	return written + 1;
}

static uint64_t blk_rw_len(const struct blk_io_req *r)
{
	return r->hdr.type == VIRTIO_BLK_T_IN ? r->elem.in_len - 1 :
						r->elem.out_len - sizeof(r->hdr);
}

/* Would blk_rw() accept this read or write as it is? */
static bool blk_rw_valid(const struct blk *b, const struct blk_io_req *r)
{
	return r->elem.out_len >= sizeof(r->hdr) && r->elem.in_len >= 1 &&
	       blk_range_ok(b, r->hdr.sector, blk_rw_len(r)) &&
	       (r->hdr.type == VIRTIO_BLK_T_IN || !b->cfg.readonly);
}

/* blk_io_merge_fn: valid reads (or writes) of consecutive sectors, with at
 * most IOV_MAX segments in all, make one preadv (pwritev). */
static bool blk_merge(void *opaque, const struct blk_io_worker *w, const struct blk_io_req *next)
{
	const struct blk *b = opaque;
	const struct blk_io_req *last = &w->reqs[w->n - 1];
	unsigned segs = next->elem.n_in + next->elem.n_out;

	if (next->hdr.type != last->hdr.type || !blk_rw_valid(b, next) ||
	    (w->n == 1 && !blk_rw_valid(b, last)) ||
	    next->hdr.sector != last->hdr.sector + (blk_rw_len(last) >> SECTOR_SHIFT))
		return false;
	for (unsigned i = 0; i < w->n; i++)
		segs += w->reqs[i].elem.n_in + w->reqs[i].elem.n_out;
	return segs <= IOV_MAX;
}

/* A merged run in one transfer. False if that failed: then each request is
 * served again on its own, to get its own status. */
static bool blk_serve_run(struct blk *b, struct blk_io_worker *w)
{
	struct iovec iov[IOV_MAX];
	bool read = w->reqs[0].hdr.type == VIRTIO_BLK_T_IN;
	uint8_t ok = VIRTIO_BLK_S_OK;
	uint64_t total = 0, len;
	unsigned n = 0, k;

	for (unsigned i = 0; i < w->n; i++) {
		blk_data_iov(&w->reqs[i].elem, read, iov + n, &k, &len);
		n += k;
		total += len;
	}
	if (!blk_xfer(b, iov, n, (off_t)(w->reqs[0].hdr.sector << SECTOR_SHIFT), total, read))
		return false;
	for (unsigned i = 0; i < w->n; i++) {
		struct vq_elem *e = &w->reqs[i].elem;

		iov_from_buf(e->in, e->n_in, e->in_len - 1, &ok, 1);
		w->reqs[i].written = (read ? (uint32_t)(e->in_len - 1) : 0) + 1;
	}
	return true;
}

/* blk_io_serve_fn */
static void blk_serve(void *opaque, struct blk_io_worker *w)
{
	struct blk *b = opaque;

	if (w->n > 1 && blk_serve_run(b, w))
		return;
	for (unsigned i = 0; i < w->n; i++)
		w->reqs[i].written = blk_serve_one(b, w, &w->reqs[i]);
}

static void blk_reset(struct virtio_device *d)
{
	struct blk *b = d->priv;

	blk_io_reset(&b->io);
}

static void blk_quiesce(struct virtio_device *d)
{
	struct blk *b = d->priv;

	blk_io_quiesce(&b->io);
}

static void blk_save(struct virtio_device *d, struct state_writer *w)
{
	struct blk *b = d->priv;

	state_put_str(w, "path", b->path);
	state_put_u32(w, "readonly", b->cfg.readonly);
	state_put_str(w, "serial", b->serial);
	state_put_u64(w, "capacity", b->config.capacity);
}

static int blk_load(struct virtio_device *d, const struct state_reader *r)
{
	struct blk *b = d->priv;
	uint64_t cap;
	uint32_t ro;

	if (state_get_u64(r, "capacity", &cap) < 0 || state_get_u32(r, "readonly", &ro) < 0)
		return -1;
	/* The guest has cached the size and mode: the image must match. */
	if (cap != b->config.capacity || (bool)ro != b->cfg.readonly) {
		pr_err("--disk %s: the saved disk had %llu sectors%s; this image has %llu%s",
		       b->shown, (unsigned long long)cap, ro ? " (read-only)" : "",
		       (unsigned long long)b->config.capacity, b->cfg.readonly ? " (read-only)" : "");
		return -1;
	}
	return 0;
}

/* Before READY (quiesced): the guest's completed writes reach the image,
 * so a destination on another host, reading shared storage, finds them. */
static int blk_flush(struct virtio_device *d)
{
	struct blk *b = d->priv;

	if (b->fd < 0 || b->released || b->cfg.readonly)
		return 0;
	if (fdatasync(b->fd) < 0) {
		pr_err("--disk %s: cannot flush the image: %s", b->shown, strerror(errno));
		return -1;
	}
	return 0;
}

/* Live migration, after READY: drop the image (and its lock) so the
 * destination can take it. The workers are quiesced; a read-only /dev/null
 * keeps the fd number from being reused under them and makes any request
 * before the image is taken back fail with an I/O error instead of
 * silently going nowhere. */
static void blk_release(struct virtio_device *d)
{
	struct blk *b = d->priv;
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

	if (null >= 0 && b->fd >= 0) {
		dup3(null, b->fd, O_CLOEXEC);
		b->released = true;
	}
	if (null >= 0)
		close(null);
}

static int blk_open_image(struct blk *b, int *out, uint64_t *size);

/* Open and lock the image: after GO on an incoming migration, or on a
 * source whose destination would not run the guest (in place of the
 * /dev/null that release left, at the same fd number). */
static int blk_attach(struct virtio_device *d)
{
	struct blk *b = d->priv;
	uint64_t size;
	int fd;

	if (b->fd >= 0 && !b->released)
		return 0;
	if (blk_open_image(b, &fd, &size) < 0)
		return -1;
	if (size != b->size) {
		pr_err("--disk %s: the image changed size during the migration", b->shown);
		close(fd);
		return -1;
	}
	if (b->fd < 0) {
		b->fd = fd;
	} else {
		/* The lock belongs to fd's open file, which b->fd now shares. */
		if (dup3(fd, b->fd, O_CLOEXEC) < 0) {
			pr_err("--disk %s: %s", b->shown, strerror(errno));
			close(fd);
			return -1;
		}
		close(fd);
	}
	b->released = false;
	return 0;
}

static void blk_config_read(struct virtio_device *d, uint32_t off, uint8_t *data, unsigned len)
{
	struct blk *b = d->priv;

	memcpy(data, (uint8_t *)&b->config + off, len);
}

static void blk_activate(struct virtio_device *d)
{
	/* Requests that were kicked before DRIVER_OK are served now. */
	eventfd_write(d->notify_fd[0], 1);
}

static void blk_destroy(struct virtio_device *d)
{
	struct blk *b = d->priv;

	if (!b)
		return;
	blk_io_destroy(&b->io);
	if (b->fd >= 0)
		close(b->fd);
	free(b);
}

static const struct virtio_device_ops blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.queue_max = BLK_QUEUE_SIZE,
	.features = VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH |
		    VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES,
	.config_size = sizeof(struct blk_config),
	.config_read = blk_config_read,
	.activate = blk_activate,
	.reset = blk_reset,
	.destroy = blk_destroy,
	.quiesce = blk_quiesce,
	.state_version = 1,
	.save = blk_save,
	.load = blk_load,
	.flush = blk_flush,
	.release = blk_release,
	.attach = blk_attach,
};


/* The image opened and locked (OFD lock: shared when read-only) into *out. */
static int blk_open_image(struct blk *b, int *out, uint64_t *size)
{
	struct flock lk = { .l_type = b->cfg.readonly ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET };
	struct stat st;
	int fd;

	fd = open(b->path, (b->cfg.readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		pr_err("--disk %s: %s", b->shown, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
		pr_err("--disk %s: not a regular file or block device", b->shown);
		goto err;
	}
	if (fcntl(fd, F_OFD_SETLK, &lk) < 0) {
		pr_err("--disk %s: image is in use by another process (%s)", b->shown,
		       strerror(errno));
		goto err;
	}
	*size = (uint64_t)(S_ISBLK(st.st_mode) ? lseek(fd, 0, SEEK_END) : st.st_size) & ~511ULL;
	*out = fd;
	return 0;
err:
	close(fd);
	return -1;
}

static int blk_open(struct blk *b)
{
	return blk_open_image(b, &b->fd, &b->size);
}

/*
 * An incoming live migration, before READY: everything about the image
 * that can fail, checked without taking it from the source (no lock): it
 * exists, is a regular file or block device, and opens in the mode the disk
 * needs. Its size is checked against the stream's on load.
 */
static int blk_probe(struct blk *b)
{
	struct stat st;
	int fd;

	fd = open(b->path, (b->cfg.readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		pr_err("--disk %s: %s", b->shown, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
		pr_err("--disk %s: not a regular file or block device", b->shown);
		close(fd);
		return -1;
	}
	b->size = (uint64_t)(S_ISBLK(st.st_mode) ? lseek(fd, 0, SEEK_END) : st.st_size) & ~511ULL;
	close(fd);
	return 0;
}

static void blk_fill_config(struct blk *b)
{
	struct blk_config *c = &b->config;

	c->capacity = b->size >> SECTOR_SHIFT;
	c->seg_max = VQ_MAX_SG - 2;
	c->blk_size = 512;
	c->max_discard_sectors = BLK_MAX_DISCARD_SECTORS;
	c->max_discard_seg = 1;
	c->discard_sector_alignment = 4096 >> SECTOR_SHIFT;
	c->max_write_zeroes_sectors = BLK_MAX_DISCARD_SECTORS;
	c->max_write_zeroes_seg = 1;
	c->write_zeroes_may_unmap = 1;
}

int virtio_blk_create(struct vm *vm, const struct disk_config *cfg)
{
	struct blk *b = calloc(1, sizeof(*b));
	int err;

	if (!b)
		return -1;
	b->cfg = *cfg;
	b->fd = -1;
	snprintf(b->path, sizeof(b->path), "%s", cfg->path);
	log_escape(b->shown, sizeof(b->shown), b->path);
	b->cfg.path = b->path;
	snprintf(b->serial, sizeof(b->serial), "%s", cfg->serial ? cfg->serial : "");
	/* An incoming live migration takes the image (and its lock) only
	 * after GO; until then it checks what it can without taking it. */
	if (blk_io_init(&b->io) < 0 ||
	    (vm->cfg.defer_backends ? blk_probe(b) : blk_open(b)) < 0) {
		blk_destroy(&(struct virtio_device){ .priv = b });
		return -1;
	}
	blk_fill_config(b);
	b->ops = blk_ops;
	if (cfg->readonly)
		b->ops.features = (b->ops.features & ~(VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES)) |
				  VIRTIO_BLK_F_RO;
	b->dev = virtio_mmio_create(vm, &b->ops, b);
	if (!b->dev)
		return -1;
	err = blk_io_start(&b->io, b->dev, blk_serve, blk_merge, b);
	if (err) {
		/* The device is registered: destroying it joins those started. */
		pr_err("--disk %s: cannot start the I/O threads: %s", b->shown, strerror(err));
		return -1;
	}
	return 0;
}
