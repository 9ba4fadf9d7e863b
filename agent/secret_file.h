/* Secrets and keys from files: the client secret today, and the admin token, signing keys and
 * Redis password alike. One reader that checks the file's type, mode and owner, bounds its size,
 * trims one trailing newline and wipes every copy it makes. Used by config_check.c. */
#ifndef PTA_SECRET_FILE_H
#define PTA_SECRET_FILE_H

#include <stdbool.h>
#include <stddef.h>

struct secret_spec {
    const char *what; /* "client secret", "admin token": names the file in messages */
    size_t max;       /* largest accepted content in bytes; 0: 4096 */
    bool multi_line;  /* PEM keys: line breaks allowed (one trailing newline is still trimmed) */
    /* false: a mode looser than 0640 is only warned about (the client secret, as it always was).
     * true: refused, and the file must belong to the agent's user or root. */
    bool strict;
};

/* Reads path into *out (malloc'd, NUL-terminated; *len_out its length when not NULL). The content
 * must not be empty nor hold NUL bytes, nor line breaks unless multi_line. Returns 0, or -1 with
 * "<what> file '<path>' ..." in err and *out untouched. */
int secret_file_read(const char *path, const struct secret_spec *spec, char **out, size_t *len_out,
                     char *err, size_t errlen);

/* Wipes and frees *s, then sets it to NULL. */
void secret_free(char **s);

#endif
