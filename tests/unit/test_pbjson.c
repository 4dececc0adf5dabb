/* Unit tests of the protobuf-c -> proto3 JSON writer (pbjson.c) on real generated messages:
 * the forms python's json_format gives the same messages (checked end to end by
 * tests/integration/test_xds_validate.py, ConfigDumpTest). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "pbjson.h"

#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/core/v3/base.pb-c.h"
#include "envoy/config/endpoint/v3/load_report.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/struct.pb-c.h"

#include <stdlib.h>
#include <string.h>

static char *json_of(const ProtobufCMessage *m)
{
    hf_buf b = {0};
    pbjson_message(&b, m);
    return hf_buf_take(&b);
}

static void expect(const ProtobufCMessage *m, const char *want)
{
    char *got = json_of(m);
    assert_string_equal(got, want);
    free(got);
}

static void test_durations(void **state)
{
    (void)state;
    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    d.seconds = 3600;
    expect(&d.base, "\"3600s\"");
    d.seconds = 1;
    d.nanos = 500000000;
    expect(&d.base, "\"1.500s\"");
    d.seconds = 0;
    d.nanos = 1000;
    expect(&d.base, "\"0.000001s\"");
    d.nanos = 1;
    expect(&d.base, "\"0.000000001s\"");
    d.seconds = -2;
    d.nanos = -250000000;
    expect(&d.base, "\"-2.250s\"");
    d.seconds = 0;
    d.nanos = 0;
    expect(&d.base, "\"0s\"");
}

static void test_int64_as_strings_doubles_shortest(void **state)
{
    (void)state;
    Envoy__Config__Endpoint__V3__EndpointLoadMetricStats m =
        ENVOY__CONFIG__ENDPOINT__V3__ENDPOINT_LOAD_METRIC_STATS__INIT;
    expect(&m.base, "{}"); /* defaults are left out */
    m.metric_name = "cpu_\"x\"\n";
    m.num_requests_finished_with_metric = 18446744073709551615ull;
    m.total_metric_value = 0.1;
    expect(&m.base, "{\"metricName\":\"cpu_\\\"x\\\"\\u000a\",\"numRequestsFinishedWithMetric\":"
                    "\"18446744073709551615\",\"totalMetricValue\":0.1}");
}

static void test_enums_bytes_oneof(void **state)
{
    (void)state;
    Envoy__Config__Core__V3__DataSource ds = ENVOY__CONFIG__CORE__V3__DATA_SOURCE__INIT;
    ds.specifier_case = ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_BYTES;
    uint8_t raw[] = {0xfb, 0xff, 'h', 'i'};
    ds.inline_bytes.data = raw;
    ds.inline_bytes.len = 4;
    expect(&ds.base, "{\"inlineBytes\":\"+/9oaQ==\"}");
    ds.inline_bytes.len = 0; /* a oneof member is present even when empty */
    expect(&ds.base, "{\"inlineBytes\":\"\"}");

    Envoy__Config__Cluster__V3__Cluster c = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__INIT;
    c.name = "cart";
    c.cluster_discovery_type_case =
        ENVOY__CONFIG__CLUSTER__V3__CLUSTER__CLUSTER_DISCOVERY_TYPE_TYPE;
    c.type = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__STATIC; /* 0, but set */
    c.lb_policy = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__MAGLEV;
    expect(&c.base, "{\"name\":\"cart\",\"type\":\"STATIC\",\"lbPolicy\":\"MAGLEV\"}");
    c.lb_policy = 99; /* unknown: the number */
    expect(&c.base, "{\"name\":\"cart\",\"type\":\"STATIC\",\"lbPolicy\":99}");
}

static void test_struct_and_any(void **state)
{
    (void)state;
    Google__Protobuf__Value fleet = GOOGLE__PROTOBUF__VALUE__INIT;
    fleet.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    fleet.string_value = "blue";
    Google__Protobuf__Value n = GOOGLE__PROTOBUF__VALUE__INIT;
    n.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    n.number_value = 2.5;
    Google__Protobuf__Struct__FieldsEntry e1 = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    e1.key = "fleet";
    e1.value = &fleet;
    Google__Protobuf__Struct__FieldsEntry e2 = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    e2.key = "n";
    e2.value = &n;
    Google__Protobuf__Struct__FieldsEntry *entries[] = {&e1, &e2};
    Google__Protobuf__Struct st = GOOGLE__PROTOBUF__STRUCT__INIT;
    st.n_fields = 2;
    st.fields = entries;
    expect(&st.base, "{\"fleet\":\"blue\",\"n\":2.5}");

    /* An Any of a known type is unpacked; of an unknown one, kept as base64. */
    Envoy__Config__Cluster__V3__Cluster c = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__INIT;
    c.name = "x";
    uint8_t buf[64];
    size_t len = protobuf_c_message_pack(&c.base, buf);
    Google__Protobuf__Any a = GOOGLE__PROTOBUF__ANY__INIT;
    a.type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    a.value.data = buf;
    a.value.len = len;
    expect(&a.base, "{\"@type\":\"type.googleapis.com/envoy.config.cluster.v3.Cluster\","
                    "\"name\":\"x\"}");
    a.type_url = "type.googleapis.com/some.Unknown";
    expect(&a.base, "{\"@type\":\"type.googleapis.com/some.Unknown\",\"value\":\"CgF4\"}");
    /* Well-known types inside Any carry their JSON under "value". */
    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    d.seconds = 5;
    len = protobuf_c_message_pack(&d.base, buf);
    a.type_url = "type.googleapis.com/google.protobuf.Duration";
    a.value.len = len;
    expect(&a.base,
           "{\"@type\":\"type.googleapis.com/google.protobuf.Duration\",\"value\":\"5s\"}");
    /* Bytes that are not an Any are refused. */
    hf_buf b = {0};
    uint8_t junk[] = {0xff, 0xff, 0xff};
    assert_int_equal(pbjson_any_bytes(&b, junk, sizeof(junk)), -1);
    assert_int_equal(b.len, 0);
    hf_buf_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_int64_as_strings_doubles_shortest),
        cmocka_unit_test(test_enums_bytes_oneof),
        cmocka_unit_test(test_struct_and_any),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
