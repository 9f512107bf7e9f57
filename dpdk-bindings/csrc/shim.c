#include <stddef.h>
#include <rte_config.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_ring.h>

#include "shim.h"

uint16_t gw_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t gw_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *gw_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
void gw_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
void gw_pktmbuf_free_bulk(struct rte_mbuf **pkts, unsigned int n) { rte_pktmbuf_free_bulk(pkts, n); }


char *gw_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
char *gw_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
char *gw_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
int gw_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }

unsigned int gw_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned int n)
{
	return rte_ring_enqueue_burst(r, objs, n, NULL);
}

unsigned int gw_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned int n)
{
	return rte_ring_dequeue_burst(r, objs, n, NULL);
}

unsigned int gw_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }

unsigned int gw_lcore_id(void) { return rte_lcore_id(); }
int gw_errno(void) { return rte_errno; }
uint64_t gw_tsc(void) { return rte_get_tsc_cycles(); }
void gw_pause(void) { rte_pause(); }

void gw_mbuf_layout(uint32_t out[8])
{
	out[0] = offsetof(struct rte_mbuf, buf_addr);
	out[1] = offsetof(struct rte_mbuf, data_off);
	out[2] = offsetof(struct rte_mbuf, nb_segs);
	out[3] = offsetof(struct rte_mbuf, port);
	out[4] = offsetof(struct rte_mbuf, pkt_len);
	out[5] = offsetof(struct rte_mbuf, data_len);
	out[6] = offsetof(struct rte_mbuf, buf_len);
	out[7] = sizeof(struct rte_mbuf);
}
