virtual_server 10.50.1.100 80 {
    real_server 10.50.2.11 80 {
    }
}
