virtual_server 10.50.1.100 53 {
    protocol UDP
    real_server 10.50.2.21 53 {
    }
}
