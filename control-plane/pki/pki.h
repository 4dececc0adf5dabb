/*
 * `holdfast pki`: a small certificate authority for operators who have none (the role of
 * `consul tls ca create` / `consul tls cert create`), on OpenSSL's libcrypto.
 *
 *   holdfast pki init --dir D                  D/ca.crt, D/ca.key (a new CA, 10 years)
 *   holdfast pki issue --dir D --group G       D/group-G.{crt,key}:  URI spiffe://holdfast/group/G
 *   holdfast pki issue --dir D --checker NAME  D/checker-NAME.{crt,key}:
 * spiffe://holdfast/checker/NAME holdfast pki issue --dir D --server HOST D/server-HOST.{crt,key}:
 * DNS or IP SAN HOST
 *
 * Keys are ECDSA P-256, written 0600; certificates and keys are replaced atomically (rename), so
 * a running holdfast watching them never reads half a file.
 */
#ifndef HF_PKI_H
#define HF_PKI_H

/* Runs the subcommand (argv[0] is "pki"). Returns the process exit status: 0, 1 (failed, a
 * one-line error on stderr) or 2 (usage). */
int hf_pki_main(int argc, char **argv);

#endif
