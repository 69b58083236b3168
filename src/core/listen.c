/* placeholder while this file is written; see the issue in progress. */
