"""The sans-IO core: truth model, comparator, budget, scheduler, DNS message code and the
verdict rules. Plain Python with no clock of its own, no event loop and no sockets."""
