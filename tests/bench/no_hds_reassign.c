/*
 * Benchmark only: linked into holdfast_no_reassign with -Wl,--wrap=xds__hds_reassign, so that
 * tests/bench/xds_scale.py can measure the xDS path (store read, snapshot build, pushes) apart
 * from the health-check reassignment that follows every snapshot (issue 11 rewrites that one).
 * Nothing else changes; never shipped.
 */
struct xds_server;

void __wrap_xds__hds_reassign(struct xds_server *srv);

void __wrap_xds__hds_reassign(struct xds_server *srv)
{
    (void)srv;
}
