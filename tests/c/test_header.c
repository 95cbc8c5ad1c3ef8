/* The header compiles cleanly (C99 and C++11, -Wall -Wextra -Wpedantic
 * -Werror) and can be included twice. */
#include "payload_store.h"
#include "payload_store.h"

int main(void) {
    ps_edge_id id = {0, 1};
    ps_location loc = {0, 0, 0};
    ps_buf buf = {0, 0};
    ps_stats st;
    (void)id; (void)loc; (void)st;
    ps_buf_free(&buf);
    return ps_version_number() == PS_VERSION_NUMBER ? 0 : 1;
}
