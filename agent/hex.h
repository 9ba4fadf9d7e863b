/* Hexadecimal digits: one decoder of a hex digit (either case) for the parsers that read hex
 * from an operator or the wire (purge selectors, percent-encoded form fields). */
#ifndef PTA_HEX_H
#define PTA_HEX_H

/* The value of one hex digit (either case), or -1 when c is not one. */
static inline int hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
