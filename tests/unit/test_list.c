/* Unit tests of the intrusive list (common/list.h): order, removal while iterating, removing an
 * unlinked member, and finding the struct back from its link. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "list.h"

struct item {
    int n;
    hf_list link;
};

static int collect(hf_list *head, int *out)
{
    int k = 0;
    hf_list *it;
    hf_list_foreach(it, head)
    {
        out[k++] = hf_list_entry(it, struct item, link)->n;
    }
    return k;
}

static void test_order_and_removal(void **state)
{
    (void)state;
    hf_list head = HF_LIST_INIT(head);
    assert_true(hf_list_empty(&head));
    assert_null(hf_list_first(&head));
    struct item items[5];
    for (int i = 0; i < 5; i++) {
        items[i].n = i;
        hf_list_insert_tail(&head, &items[i].link);
    }
    struct item zero = {.n = -1};
    hf_list_insert_head(&head, &zero.link);
    int got[8];
    assert_int_equal(collect(&head, got), 6);
    int want[] = {-1, 0, 1, 2, 3, 4};
    assert_memory_equal(got, want, sizeof(want));
    /* Remove the odd ones while iterating. */
    hf_list *it, *tmp;
    hf_list_foreach_safe(it, tmp, &head)
    {
        if (hf_list_entry(it, struct item, link)->n % 2 != 0) {
            hf_list_remove(it);
        }
    }
    assert_int_equal(collect(&head, got), 3);
    int want2[] = {0, 2, 4};
    assert_memory_equal(got, want2, sizeof(want2));
    /* A removed link is an empty ring: removing it again changes nothing. */
    hf_list_remove(&items[1].link);
    assert_int_equal(collect(&head, got), 3);
    assert_ptr_equal(hf_list_entry(hf_list_first(&head), struct item, link), &items[0]);
    hf_list_remove(&items[0].link);
    hf_list_remove(&items[2].link);
    hf_list_remove(&items[4].link);
    assert_true(hf_list_empty(&head));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_removal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
