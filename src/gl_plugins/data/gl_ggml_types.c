/* Prints the ggml type table of the build it is linked against, as JSON. */
#include <stdio.h>
#include "ggml.h"

int main(void) {
    printf("[");
    int first = 1;
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char * name = ggml_type_name((enum ggml_type) t);
        long long blck = (long long) ggml_blck_size((enum ggml_type) t);
        size_t size = ggml_type_size((enum ggml_type) t);
        if (blck == 0 || name == NULL) continue;
        printf("%s{\"id\": %d, \"name\": \"%s\", \"block_size\": %lld, \"type_size\": %zu}",
               first ? "" : ", ", t, name, blck, size);
        first = 0;
    }
    printf("]\n");
    return 0;
}
