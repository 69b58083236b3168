/* Intrusive doubly linked lists: an item carries its own prev and next pointers, the list is its head. */
#pragma once

/* Puts item at the front of the list whose first item is head (an lvalue); prev and next name the item's
 * link fields, so that one item can be in several lists. */
#define LIST_PREPEND(head, item, prev, next)                    \
        do {                                                    \
                typeof(item) _li = (item);                      \
                _li->prev = NULL;                               \
                _li->next = (head);                             \
                if (_li->next)                                  \
                        _li->next->prev = _li;                  \
                (head) = _li;                                   \
        } while (0)

/* Takes item, which must be in the list, out of it and clears its links. */
#define LIST_REMOVE(head, item, prev, next)                     \
        do {                                                    \
                typeof(item) _li = (item);                      \
                if (_li->prev)                                  \
                        _li->prev->next = _li->next;            \
                else                                            \
                        (head) = _li->next;                     \
                if (_li->next)                                  \
                        _li->next->prev = _li->prev;            \
                _li->prev = _li->next = NULL;                   \
        } while (0)
