/*
 * DPDK's fast-path functions are `static inline` in its headers, so they have
 * no symbol to link against. Each is wrapped here once, compiled with
 * pkg-config's own cflags (so the inline bodies match the installed libraries'
 * ABI), and exported under a `gw_` prefix.
 */
#ifndef GW_SHIM_H
#define GW_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;
struct rte_ring;

uint16_t gw_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t gw_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);

struct rte_mbuf *gw_pktmbuf_alloc(struct rte_mempool *mp);
void gw_pktmbuf_free(struct rte_mbuf *m);
void gw_pktmbuf_free_bulk(struct rte_mbuf **pkts, unsigned int n);


/* NULL on failure, else the new start of data. */
char *gw_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *gw_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *gw_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
/* 0 on success, -1 if len exceeds the last segment's data. */
int gw_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);

unsigned int gw_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned int n);
unsigned int gw_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned int n);
unsigned int gw_ring_count(const struct rte_ring *r);

unsigned int gw_lcore_id(void);
int gw_errno(void);
uint64_t gw_tsc(void);
void gw_pause(void);

/* offsetof() of the rte_mbuf fields Rust reads directly, in this order:
 * buf_addr, data_off, nb_segs, port, pkt_len, data_len, buf_len; and sizeof. */
void gw_mbuf_layout(uint32_t out[8]);

#endif
